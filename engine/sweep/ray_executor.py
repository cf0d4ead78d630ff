"""``sweep.py --backend ray``: the sweep's stages as Ray tasks on whichever node of a Ray cluster has room.

Each task runs the very command the local executor would run (see :func:`engine.command.run_command_here`),
asking Ray for ``ray_cpus`` CPUs and the GPUs that ``--device`` names (none for ``cpu``; for ``''``, one when the
cluster has GPUs). Ray's resources, not ``--jobs``, decide how many stages run at once. The commands read and write
absolute paths (the repo, the Python interpreter, the data, the sweep folder), so every node must see them at the
same paths: a shared file system, as on most GPU clusters. The driver gathers the results from those folders into the
same tables as a local sweep.

Ray is an optional extra (``pip install -r requirements-extra.txt``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import Future, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

import engine.command as command_module
from engine.sweep.executors import Executor
from engine.sweep.stages import Stage
from utils.paths import REPO_ROOT

__all__ = ["RayExecutor", "import_ray", "gpus_per_stage", "forwarded_env", "EXTRA"]

LOGGER = logging.getLogger(__name__)

EXTRA = "requirements-extra.txt"
# Settings that travel with each task: on a cluster a worker's environment is its node's, not the driver's.
_FORWARD_PREFIXES = ("YOLO_",)
_FORWARD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ValueError: Ray is not installed; the message names the extra to install.
    """
    try:
        import ray
    except ImportError as e:
        raise ValueError(f"--backend ray needs Ray, an optional extra: pip install -r {EXTRA} (in this repo) "
                         f"[{e}]") from None
    return ray


def gpus_per_stage(device: str, cluster_gpus: float) -> int:
    """GPUs each stage asks Ray for: none for ``cpu``/``mps``, one per id for ``0`` or ``0,1`` (a stage that trains
    on two GPUs), and for ``''`` one when the cluster has GPUs (train.py's own default picks a GPU when it sees one)."""
    d = str(device).strip().lower().replace("cuda:", "")
    if d in ("cpu", "mps"):
        return 0
    if d:
        return len([x for x in d.split(",") if x.strip()])
    return 1 if cluster_gpus >= 1 else 0


def forwarded_env() -> dict[str, str]:
    """This process's ``YOLO_*`` settings and thread counts, which every stage command gets wherever it runs."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES) or k in _FORWARD}


class RayExecutor(Executor):
    """Stages as Ray tasks.

    Args:
        device: the sweep's ``--device``: how many GPUs each stage asks for (see :func:`gpus_per_stage`).
        cpus: CPUs each stage asks for (Ray's ``num_cpus``; raise it to run fewer stages per node).
        address: the Ray cluster to join (``ray.init(address=...)``); ``''`` joins ``$RAY_ADDRESS`` when set, else
            starts a Ray instance on this machine for the sweep. When this process already called ``ray.init``, that
            instance is used (and left running).

    Raises:
        ValueError: Ray is not installed, or a stage would ask for more CPUs or GPUs than the whole cluster has (it
            would wait forever).
    """

    def __init__(self, device: str = "", cpus: float = 1.0, address: str = "") -> None:
        ray = import_ray()
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address or None)
        elif address:
            LOGGER.warning(f"sweep: Ray is already initialised in this process; ray_address {address} is not used")
        try:
            resources = ray.cluster_resources()
            self.gpus = gpus_per_stage(device, resources.get("GPU", 0))
            self.cpus = cpus
            for name, need, have in (("GPU", self.gpus, resources.get("GPU", 0)),
                                     ("CPU", cpus, resources.get("CPU", 0))):
                if need > have:
                    raise ValueError(f"backend ray: each stage asks for {need:g} {name}(s) (from "
                                     f"{'--device ' + repr(device) if name == 'GPU' else '--ray-cpus'}) but the Ray "
                                     f"cluster has {have:g}")
        except BaseException:
            self.close()
            raise
        # The command's --device: the task's own GPUs, which Ray makes visible as 0..n-1.
        self.device = ",".join(map(str, range(self.gpus))) if self.gpus else (None if device == "mps" else "cpu")
        self.capacity = sys.maxsize  # every ready stage is handed to Ray, which queues it until a node has room
        # By value: a worker needs nothing of this repo importable to run the task, only the command's paths.
        ray.cloudpickle.register_pickle_by_value(command_module)
        self._task = ray.remote(command_module.run_command_here)
        self._refs: dict[Future, Any] = {}
        self._lock = threading.Lock()

    def submit(self, stage: Stage, log: Path) -> tuple[Future, str]:
        placed = stage if self.device is None else replace(stage, device=self.device)
        env = {**forwarded_env(), **placed.env}
        # No retries: a stage whose node died is reported failed, and running the sweep again resumes it.
        ref = self._task.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0, name=stage.name).remote(
            placed.argv(), str(log), str(REPO_ROOT), env)
        fut = ref.future()
        with self._lock:
            self._refs[fut] = ref
        fut.add_done_callback(self._forget)
        return fut, "ray" + (f" ({self.gpus} GPU)" if self.gpus else "")

    def _forget(self, fut: Future) -> None:
        with self._lock:
            self._refs.pop(fut, None)

    def stop(self, timeout: float = 40.0) -> None:
        """Cancel every stage in flight: a running task gets KeyboardInterrupt and ends its command (SIGTERM, then
        SIGKILL after 30 s) before it returns."""
        with self._lock:
            refs = dict(self._refs)
        for ref in refs.values():
            self._ray.cancel(ref)
        wait(list(refs), timeout=timeout)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
