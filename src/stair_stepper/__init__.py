"""stair-stepper: why Python service memory climbs in stair steps, and what the allocator does."""

__version__ = "0.1.0"
