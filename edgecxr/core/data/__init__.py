"""Reading images and image folders: torch-free, shared by training and the runtime."""
