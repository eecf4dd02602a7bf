"""C API (``include/parnet_rt.h``): ``libparnet_rt.so`` built with cffi's embedding mode."""
