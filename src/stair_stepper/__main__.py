from stair_stepper.cli import main

raise SystemExit(main())
