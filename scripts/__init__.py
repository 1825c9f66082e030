"""Engine drivers (Ultralytics, Darknet, torch) and the demo/bench orchestration."""
