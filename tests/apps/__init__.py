"""Small applications the tests serve with ``--app apps.NAME:ATTR --app-dir tests``."""
