"""Earth observation as a plug-in of the CWL layer: what ``register`` adds to a server.

- the STAC stage-out: a CWL output Directory holding a STAC catalog becomes a FeatureCollection whose assets
  are in results storage (what it uses loaded in each worker before it forks job processes);
- the environment of CWL steps: the steps' configuration (network policy, local roots, signing) and the
  worker's step server;
- the container images of the water-bodies steps mapped to ogcflow's own steps, run by a step server that
  each worker forks before its jobs (when no container runtime is used and ``OGCFLOW_CWL_STEP_IMAGES``);
- the shipped packages (water-bodies), deployed by default;
- its settings group.
"""

from __future__ import annotations

import os
from functools import partial

from ogcflow.eo.config import ENV as STEP_CONFIG_ENV
from ogcflow.eo.config import StepConfig
from ogcflow.eo.packages import SHIPPED, STEP_IMAGES, shipped_package
from ogcflow.eo.settings import EOSettings
from ogcflow.eo.stageout import stac_output
from ogcflow.eo.stepserver import ENV as STEP_SOCKET_ENV
from ogcflow.eo.stepserver import StepServer, answering
from ogcflow.wiring import Extensions

SETTINGS = EOSettings


class StepServerPlugin:
    """A worker plugin: the step server, forked first (while the worker has no threads)."""

    order = 0

    def __init__(self, config: str | None = None) -> None:
        self.config = config
        self.server: StepServer | None = None

    def start(self) -> None:
        self.server = StepServer(self.config).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class StageOutWarmUp:
    """A worker plugin: what the STAC stage-out of a job uses (rasterio, GDAL's drivers, numpy) loaded once in
    the worker, after the step server is forked and before any job process is."""

    order = 20

    def start(self) -> None:
        from ogcflow.eo.quicklook import warm_up

        warm_up()

    def stop(self) -> None:
        return None


def register(ext: Extensions) -> None:
    settings = ext.settings
    eo = settings.group(EOSettings)
    config = StepConfig.of(settings.store.data_dir, settings.network, eo).to_env()

    def step_env() -> dict[str, str]:
        env = {STEP_CONFIG_ENV: config}
        socket = os.environ.get(STEP_SOCKET_ENV)
        if socket:
            env[STEP_SOCKET_ENV] = socket
        return env

    def sandbox_paths() -> list[str]:
        """What the steps need in a tool's sandbox, which they enter: the socket, the interpreter and its
        libraries (modules imported late, PROJ and GDAL data), ogcflow's code, the local roots of items."""
        import sys

        import ogcflow

        socket = os.environ.get(STEP_SOCKET_ENV)
        code = os.path.dirname(os.path.abspath(ogcflow.__file__))
        return [sys.prefix, sys.base_prefix, code, *(str(p) for p in eo.eo_local_roots),
                *([socket] if socket else [])]

    def offline_steps() -> list[list[str]]:
        """The steps' commands while a step server runs them: they fetch from the step process, which has the
        host's network under the server's policy; their sandbox needs none (no forwarder, no tool network).
        Without a step server the launcher runs the step in the sandbox, which then needs the policed one."""
        return list(STEP_IMAGES.values()) if answering(os.environ.get(STEP_SOCKET_ENV)) else []

    ext.cwl.output_handlers.append(stac_output)
    ext.worker_plugins.append(StageOutWarmUp())
    ext.cwl.step_env.append(step_env)
    ext.cwl.sandbox_paths.append(sandbox_paths)
    if eo.cwl_step_images:
        ext.cwl.images.update(STEP_IMAGES)
        ext.cwl.offline_commands.append(offline_steps)
        if settings.cwl.container_runtime == "none":
            ext.worker_plugins.append(StepServerPlugin(config))
    for name in SHIPPED:
        ext.shipped[name] = partial(shipped_package, name)
