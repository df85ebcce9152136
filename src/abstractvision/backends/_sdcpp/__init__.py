"""stable-diffusion.cpp backend internals: model files, LoRAs, and the crash-isolated worker process. The public surface is :mod:`abstractvision.backends.stable_diffusion_cpp`."""
