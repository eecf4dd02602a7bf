"""``python -m parnet_deploy.runtime.distributed``: a worker (rank k > 0); its config on stdin."""

from .worker import worker_main

if __name__ == "__main__":
    worker_main()
