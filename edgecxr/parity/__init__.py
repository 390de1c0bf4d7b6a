"""`edgecxr parity-check`: is each engine as accurate as the PyTorch model that was validated?"""
