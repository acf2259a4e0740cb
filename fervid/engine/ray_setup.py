"""Starting or attaching Ray so that nothing leaves the machine unless asked.

Patient data: the embedded Ray of a plain run listens on 127.0.0.1 only, makes no
outbound connection (no usage report, no cloud-provider probe, no DNS), and keeps its
session files and auth token in a private folder (mode 0700) that the run owns and
removes. The switches, found in Ray 2.60's source:

- ``address="local"``: always start a new embedded Ray; never attach to a cluster
  found through ``RAY_ADDRESS`` or ``/tmp/ray/ray_current_cluster`` (that attach fails
  with "num_cpus and num_gpus must not be provided", and would send patient crops to
  somebody else's cluster).
- ``_node_ip_address="127.0.0.1"`` plus ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``:
  ``services.resolve_ip_for_localhost`` otherwise swaps 127.0.0.1 for the machine's
  network address, and GCS, raylet, object manager and workers bind to it. The variable
  is read when ``ray`` is imported, so it is set when this module is imported.
- ``include_dashboard=False`` still starts the dashboard process with one module,
  ``UsageStatsHead``, whose ``run`` asks 169.254.169.254 and metadata.google.internal
  for the cloud provider *before* checking ``RAY_USAGE_STATS_ENABLED``, unless
  ``~/ray_bootstrap_config.yaml`` exists. The Ray processes therefore get ``HOME`` set
  to the private folder, which holds an empty bootstrap config.
- Token auth (Ray 2.60) with a fresh token in the private folder (``RAY_AUTH_MODE``,
  ``RAY_AUTH_TOKEN_PATH``), instead of a long-lived ``~/.ray/auth_token`` (mode 0644).

Signals and leftovers (issue 19): ``ray.init`` sets a SIGTERM handler that calls
``sys.exit(15)``, then its node's, which exits 1, and the driver's C++ core installs
Abseil's failure handler, which prints a stack dump on SIGTERM. So while ``ray.init``
runs the stop signals are held (:func:`fervid.engine.interrupt.held`), Ray's
``set_sigterm_handler`` does nothing, and the driver's failure handler is off
(``RAY_DISABLE_FAILURE_SIGNAL_HANDLER``, in the driver only: workers keep theirs). Each
daemon Ray starts gets a session of its own and umask 077 (``ConsolePopen`` below), so
a signal to the driver's process group (Ctrl-C in a terminal, ``kill -TERM -PGID``)
reaches the driver alone, which then shuts Ray down, and Ray's files are private. A
watchdog (:mod:`fervid.engine.ray_watchdog`) kills what is left of those sessions and
removes the private folder when the driver ends, SIGKILL included.

The engine's other modules never import Ray at module level; this one does not either,
so a run that has nothing to do never pays for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fervid.engine import ray_watchdog
from fervid.engine.interrupt import held
from fervid.errors import ConfigError
from fervid.settings import split_ray_address

# Read by ray._private.ray_constants at import time (see the module docstring).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

LOOPBACK = "127.0.0.1"
#: Name prefix of an embedded run's private folder, and the file in it naming the
#: driver's pid (so that a later run can tell a dead run's folder from a live one's).
_PRIVATE_PREFIX = "fervid-ray-"
_PID_FILE = "driver.pid"
#: Seconds a closing run waits for its watchdog to finish the sweep.
_WATCHDOG_WAIT_S = 5.0
#: Seconds ``--ray-address`` may take to answer a TCP connect before the run gives up.
CONNECT_TIMEOUT_S = 5.0
#: Environment every Ray process of an embedded run starts with (values None: removed).
_EMBEDDED_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_ADDRESS": None,  # address="local" ignores it; removed so workers never see it
    # Unset, so that ray.init's enable_token_auth_by_default turns token mode on *and*
    # refreshes the driver's cached config (an explicit "token" skips the refresh).
    "RAY_AUTH_MODE": None,
}


class RayStartError(ConfigError):
    """Ray could not be started or reached; the message says why and how to fix it."""


class RaySession:
    """A Ray connection for one run: started here (``owned``) or borrowed.

    :meth:`close` shuts an owned Ray down, restores the environment variables changed
    for it and removes its private folder; a borrowed one (a Ray the caller started, or
    an attached cluster's connection opened by someone else) is left alone.
    """

    def __init__(
        self,
        ray: Any,
        *,
        owned: bool,
        private_dir: Path | None,
        saved_env: dict[str, str | None],
        watchdog: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.ray, self.owned, self.private_dir = ray, owned, private_dir
        self._saved_env = saved_env
        self._watchdog = watchdog

    @property
    def cpus(self) -> int:
        return int(self.ray.cluster_resources().get("CPU", 1))

    @property
    def gpus(self) -> int:
        return int(self.ray.cluster_resources().get("GPU", 0))

    def forget(self) -> None:
        """Drop a connection to a cluster that is gone without calling into Ray (which
        would block until its own 60 s timeout): the environment is restored and
        ``ray.shutdown`` is no longer run at exit (the CLI ends the process at once)."""
        import atexit

        atexit.unregister(self.ray.shutdown)
        _restore_env(self._saved_env)
        self._saved_env = {}

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        _restore_env(self._saved_env)
        self._saved_env = {}
        _stop_watchdog(self._watchdog)  # sweeps what Ray's shutdown left, removes the folder
        self._watchdog = None
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)
            self.private_dir = None


def start_ray(
    *,
    address: str | None,
    num_cpus: int | None,
    num_gpus: int | None = None,
    log_workers: bool = False,
) -> RaySession:
    """The Ray a run uses: the one already initialised in this process (left running),
    an attached cluster (``address``), or a new loopback-only embedded one.
    ``log_workers``: forward the workers' output and Ray's INFO lines to this process
    (``RunSettings.log_workers``)."""
    import ray

    if ray.is_initialized():
        return RaySession(ray, owned=False, private_dir=None, saved_env={})
    if address:
        return _attach(ray, address, log_workers=log_workers)
    return _start_embedded(ray, num_cpus=num_cpus, num_gpus=num_gpus, log_workers=log_workers)


def remove_stale_private_dirs(tmp: Path | None = None) -> list[Path]:
    """Remove the private folders (``fervid-ray-*`` in ``tmp``, default the system's
    temporary folder) of embedded runs that died without cleaning up (SIGKILL, power
    cut): only folders of this user whose recorded driver pid is no longer running.
    Folders without a pid file (another tool's, or an older fervid's) are left alone."""
    tmp = Path(tmp or tempfile.gettempdir())
    removed = []
    for folder in tmp.glob(f"{_PRIVATE_PREFIX}*"):
        try:
            st = folder.lstat()
            pid = int((folder / _PID_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or _alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has that pid now
        return True
    return True


def _log_options(log_workers: bool) -> dict[str, Any]:
    """``ray.init`` logging arguments: quiet unless the run keeps a log."""
    return {"logging_level": logging.INFO if log_workers else logging.ERROR,
            "log_to_driver": log_workers, "configure_logging": True}  # fmt: skip


def _start_embedded(
    ray: Any, *, num_cpus: int | None, num_gpus: int | None, log_workers: bool
) -> RaySession:
    remove_stale_private_dirs()
    private = Path(tempfile.mkdtemp(prefix=_PRIVATE_PREFIX))  # mode 0700, owned by this run
    _write_private(private / _PID_FILE, f"{os.getpid()}\n")  # a later run removes it if we die
    token = private / "auth_token"
    _write_private(token, secrets.token_hex(32))
    _write_private(private / "ray_bootstrap_config.yaml", "{}\n")  # see the module docstring
    watchdog = _start_watchdog(private)  # before Ray: it outlives a driver killed in ray.init
    saved = _set_env(_EMBEDDED_ENV | {"RAY_AUTH_TOKEN_PATH": str(token), "RAY_AUTH_TOKEN": None})
    home = _set_env({"HOME": str(private)})  # only while the Ray processes are spawned
    _forget_cached_token()
    try:
        with held(), _ray_leaves_signals_alone(ray), _daemons_apart(ray, private), _umask(0o077):
            ray.init(
                address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                _node_ip_address=LOOPBACK, _temp_dir=str(private / "ray"),
                include_dashboard=False, **_log_options(log_workers),
            )  # fmt: skip
    except BaseException:  # a signal while Ray started included: stop what did start
        with contextlib.suppress(Exception):
            ray.shutdown()
        _restore_env(home)
        _restore_env(saved)
        _stop_watchdog(watchdog)
        shutil.rmtree(private, ignore_errors=True)
        raise
    _restore_env(home)
    session = RaySession(ray, owned=True, private_dir=private, saved_env=saved, watchdog=watchdog)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # ray was imported before this module set the switch
        session.close()
        raise RayStartError(
            f"the embedded Ray bound to {node_ip}, not {LOOPBACK}; import fervid.engine "
            "before ray, or set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
        )
    return session


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 whatever the umask, holding ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as f:
        os.fchmod(fd, 0o600)  # the umask can only take bits away; this is exact
        f.write(text)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    """The process's umask while the block runs: the session folders and logs the driver
    creates inside ``ray.init`` are then private too (nothing else writes meanwhile)."""
    saved = os.umask(mask)
    try:
        yield
    finally:
        os.umask(saved)


def _start_watchdog(private: Path) -> subprocess.Popen[bytes] | None:
    """The watchdog of :mod:`fervid.engine.ray_watchdog`, in a session of its own (a
    signal to the driver's group leaves it alone); its stdin is the pipe whose end of
    file tells it the driver is gone. None where it cannot start (the run goes on)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", ray_watchdog.__file__, str(private)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    except OSError:
        return None


def _stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    """Close the watchdog's pipe and give it a moment to sweep and remove the folder."""
    if watchdog is None:
        return
    with contextlib.suppress(OSError):
        assert watchdog.stdin is not None
        watchdog.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        watchdog.wait(_WATCHDOG_WAIT_S)


@contextlib.contextmanager
def _ray_leaves_signals_alone(ray: Any) -> Iterator[None]:
    """While ``ray.init`` runs: Ray's Python SIGTERM handlers are not installed, and the
    driver's C++ core installs no failure handler (see the module docstring)."""
    import ray._private.ray_constants as constants
    import ray._private.utils as utils

    set_handler = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    # Read by the core worker when it starts; the stack dump on SIGTERM came from here.
    constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        yield
    finally:
        utils.set_sigterm_handler = set_handler


@contextlib.contextmanager
def _daemons_apart(ray: Any, private: Path) -> Iterator[None]:
    """Every process Ray starts from the driver while the block runs gets a session of
    its own and umask 077, and its pid is appended to the watchdog's daemons file."""
    import ray._private.services as services

    base = services.ConsolePopen
    record = private / ray_watchdog.DAEMONS_FILE

    class ApartPopen(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["start_new_session"] = True
            kwargs["umask"] = 0o077
            super().__init__(*args, **kwargs)
            fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{self.pid}\n".encode())
            finally:
                os.close(fd)

    services.ConsolePopen = ApartPopen
    try:
        yield
    finally:
        services.ConsolePopen = base


def check_address(address: str) -> None:
    """Raise :class:`RayStartError` (one line, with the fix) unless something accepts a
    TCP connection at ``address`` within ``CONNECT_TIMEOUT_S``: Ray itself retries a dead
    address for over a minute, logging each attempt."""
    host, port = _split_address(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise RayStartError(
            f"--ray-address={address}: nothing answers there ({reason}); start the cluster "
            f"with `ray start --head --node-ip-address {LOOPBACK} --port {port}` or fix the "
            "address"
        ) from None


def _attach(ray: Any, address: str, *, log_workers: bool) -> RaySession:
    check_address(address)
    host, port = _split_address(address)
    # Auth is the cluster's choice (`ray start` runs without a token unless RAY_AUTH_MODE
    # is token); guessing from a token file on disk breaks clusters that have none.
    saved = _set_env({"RAY_USAGE_STATS_ENABLED": "0"})
    try:
        # Ray's C++ log lines stay out of the terminal; signals as for an embedded Ray
        with held(), _ray_leaves_signals_alone(ray), _stderr_to_file():
            ray.init(
                address=address,
                _node_ip_address=_driver_ip(host, port), **_log_options(log_workers),
            )  # fmt: skip
    except Exception as e:
        _restore_env(saved)
        with contextlib.suppress(Exception):
            ray.shutdown()
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise RayStartError(
            f"--ray-address={address}: cannot connect ({first}); a Ray 2.60 cluster uses "
            "token auth: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the token file "
            "of `ray start` (default ~/.ray/auth_token), or RAY_AUTH_TOKEN"
        ) from None
    return RaySession(ray, owned=True, private_dir=None, saved_env=saved)


def _forget_cached_token() -> None:
    """Ray caches the token it read last; an earlier run's session had another one."""
    with contextlib.suppress(Exception):  # private API: absent in other Ray versions
        from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

        AuthenticationTokenLoader.instance().reset_cache()


def _driver_ip(host: str, port: int) -> str:
    """The address the cluster reaches this driver at: loopback for a cluster on this
    machine, else the local address of the route to ``host`` (the loopback switch set at
    import would otherwise make a remote cluster's nodes call back to 127.0.0.1)."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return LOOPBACK
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # connect() sends nothing
        s.connect((host, port))
        return s.getsockname()[0]


def _split_address(address: str) -> tuple[str, int]:
    try:
        return split_ray_address(address)
    except ConfigError as e:
        raise RayStartError(str(e)) from None


def _set_env(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (None: remove) environment variables; returns their previous values."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    _set_env(saved)


@contextlib.contextmanager
def _stderr_to_file() -> Iterator[None]:
    """Point file descriptor 2 at a scratch file while Ray connects: its C++ core logs
    there directly (not through Python's logging), ~20 lines per failed attempt."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
