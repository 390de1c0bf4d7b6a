"""`edgecxr bench`: how fast each engine of a bundle runs on this machine, to pick backend and precision."""
