"""Install-time deployment: `edgecxr service install` writes the systemd units (templates/) and their
environment files for the watcher and the DICOM listener. Runs on the device at install, never in the loop."""
