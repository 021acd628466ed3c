"""The sandbox of every command a CWL tool runs (bubblewrap), and of the JavaScript of its expressions.

A deployed package is code the platform did not write: each of its commands runs in fresh PID, IPC, UTS,
cgroup and (unless the operator shares the host's with ``NetworkAccess`` tools) network namespaces, as a
user of its own (uid ``uid_base + job process id mod 50000``, no capabilities, ``no_new_privs``), with only
the environment cwltool builds for it (HOME, TMPDIR, PATH, the package's EnvVarRequirement and the step
variables of :func:`ogcflow.packages.process.step_environment`), and a filesystem made of: ``/usr`` (and the
``/bin``, ``/lib``... links of a merged-usr system) read-only, a minimal ``/etc``, a fresh ``/dev``, ``/proc``
of its own PID namespace, an empty ``/tmp``, its job's directory read-only and the step's own output and
temporary directories writable. Nothing else of the host exists there: not the data directory, the store,
results storage, other jobs, the package files or the server's processes. Rlimits cap CPU time, memory,
open files, processes and file size (the tool's ResourceRequirement/ToolTimeLimit, under the server-wide
ceilings of :class:`ogcflow.settings.SandboxSettings`). When a command ends, every process it started
ends with it (the PID namespace goes away). A tool that declares ``NetworkAccess`` reaches HTTP(S) through
the network policy only (:mod:`ogcflow.packages.toolnet`); any other has no network.

After each command, what it left in its output directory is checked before cwltool reads it: a symbolic
link that leads out of the job's directory, and anything that is not a file, a directory or a link, is
removed (so an output cannot be made to point at a host file that the server would then read as root).

Inputs that are not under the job's directory (a ``file:///etc`` Directory, say) are refused: the sandbox
has no view of host paths.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ogcflow.errors import ProcessError
from ogcflow.netpolicy import DownloadBudget, Policy
from ogcflow.packages import toolnet
from ogcflow.settings import SandboxSettings

log = logging.getLogger("ogcflow.sandbox")

#: what commands may read of the host's /etc: files copied into the sandbox's /etc (one mount for all),
#: directories bound (libraries, certificates, alternatives, time zone, name service, GDAL/PROJ)
ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "timezone", "nsswitch.conf", "hosts", "resolv.conf",
             "host.conf", "gai.conf", "protocols", "services", "mime.types", "magic", "ca-certificates.conf")
ETC_DIRS = ("ld.so.conf.d", "alternatives", "ssl", "ca-certificates", "gdal", "proj")
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
UID_SPAN = 50000
MiB = 1024 * 1024
#: the interpreter of the tools' proxy forwarder: the system's, which the sandbox sees under /usr
SYSTEM_PYTHON = "/usr/bin/python3"
Network = Literal["deny", "policy", "host"]
#: how the job's log names what the network policy refused a tool (its failure message repeats those lines)
POLICY_REFUSED = "the network policy refused"



class SandboxUnavailable(ProcessError):
    """The sandbox is on but bubblewrap cannot run."""


class SandboxRefused(ProcessError):
    """A command would need something the sandbox does not expose (a host path as input)."""


def _etc_key() -> str:
    """What the sandboxes' /etc is made of on this host: the files' sizes and times, the directories."""
    parts = []
    for name in ETC_FILES:
        try:
            st = os.stat(f"/etc/{name}")
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}:{stat.S_ISREG(st.st_mode)}")
        except OSError:
            parts.append(f"{name}:-")
    parts += [f"{name}/" for name in ETC_DIRS if os.path.isdir(f"/etc/{name}")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _trusted_dir(path: str) -> bool:
    """A directory of this user's that no one else may change (a name in the shared temporary directory
    could have been made by anyone)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


@functools.lru_cache(maxsize=1)
def shared_etc() -> str:
    """The sandboxes' /etc, made once per host state and reused by every sandbox (not copied per job: a
    dozen file copies per job process cost ~5 ms on a loaded machine): copies of the host's ETC_FILES,
    the directories where ETC_DIRS are bound, and empty passwd and group where each sandbox's own are."""
    final = os.path.join(tempfile.gettempdir(), f"ogcflow-sandbox-etc-{os.geteuid()}-{_etc_key()}")
    if _trusted_dir(final):
        return final
    made = tempfile.mkdtemp(prefix="ogcflow-sandbox-etc-new-")
    for name in ETC_FILES:
        try:
            shutil.copyfile(f"/etc/{name}", os.path.join(made, name))
        except OSError:  # missing, or a directory on this host
            continue
    for name in ETC_DIRS:
        if os.path.isdir(f"/etc/{name}"):
            os.mkdir(os.path.join(made, name))
    for name in ("passwd", "group"):
        Path(made, name).touch()
    os.chmod(made, 0o755)
    try:
        os.rename(made, final)
    except OSError:  # made meanwhile by another process (kept if it is ours), or someone else's name
        if _trusted_dir(final):
            shutil.rmtree(made, ignore_errors=True)
            return final
        return made
    return final


def check_bwrap(settings: SandboxSettings) -> str:
    """The path of bubblewrap, or a clear error (installed? namespaces allowed?)."""
    found = shutil.which(settings.bwrap)
    if not found:
        raise SandboxUnavailable(
            f"the sandbox of CWL tools is on (OGCFLOW_SANDBOX) but '{settings.bwrap}' is not installed: install "
            "bubblewrap (apt-get install bubblewrap), or set OGCFLOW_SANDBOX=false (unsafe: deployed tools then "
            "run with the server's user, environment and files)")
    return found


@dataclass(frozen=True)
class Limits:
    """Rlimits of one command."""

    cpu_seconds: int
    memory_mb: int
    open_files: int
    processes: int
    file_size_mb: int

    @classmethod
    def ceilings(cls, settings: SandboxSettings) -> Limits:
        return cls(settings.max_cpu_seconds, settings.max_memory_mb, settings.max_open_files,
                   settings.max_processes, settings.max_file_size_mb)

    def prlimit(self) -> list[str]:
        return ["prlimit", f"--cpu={self.cpu_seconds}", f"--data={self.memory_mb * MiB}",
                f"--nofile={self.open_files}", f"--nproc={self.processes}",
                f"--fsize={self.file_size_mb * MiB}", "--"]


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass
class Sandbox:
    """The sandbox of one job's commands: the job's directory is ``root``."""

    settings: SandboxSettings
    root: Path
    #: more host paths readable in the sandbox, at the same path (trusted commands, e.g. a plugin's launcher
    #: and its interpreter); a UNIX socket among them is reachable
    readable: list[str] = field(default_factory=list)
    #: host directories (bound read-only, among ``readable``) that File and Directory inputs may come from
    #: besides the job's own files: the operator's OGCFLOW_LOCAL_ROOTS
    input_roots: list[str] = field(default_factory=list)
    #: the network policy of tools that declare NetworkAccess (OGCFLOW_SANDBOX_NETWORK=policy)
    policy: Policy | None = None
    #: the bytes the job's tools may receive through the policy, every command and connection together
    #: (OGCFLOW_TOOL_DOWNLOAD_MAX_BYTES; None: no limit)
    download_max_bytes: int | None = None
    #: command lines starting with one of these get no network (:attr:`CWLHooks.offline_commands`)
    offline_commands: list[list[str]] = field(default_factory=list)
    bwrap: str = ""
    uid: int = 0
    _etc: Path | None = None
    _nets: list[toolnet.ToolNetwork] = field(default_factory=list)
    _budget: DownloadBudget | None = None

    def __post_init__(self) -> None:
        self.bwrap = check_bwrap(self.settings)
        self.uid = self.settings.uid_base + os.getpid() % UID_SPAN
        if self.download_max_bytes is not None:  # one for the job, made before cwltool's threads share it
            self._budget = DownloadBudget(self.download_max_bytes)
        self.root = Path(os.path.realpath(self.root))
        os.chown(self.root, 0, self.uid)  # the sandbox user may enter the job's directory, no one else
        os.chmod(self.root, 0o750)

    def _etc_files(self) -> Path:
        """The sandbox's passwd and group, which name the sandbox user (in the job's directory, removed with
        it); the rest of its /etc is :func:`shared_etc`."""
        if self._etc is None:
            etc = self.root / ".sandbox-etc"
            etc.mkdir(parents=True, exist_ok=True)
            etc.chmod(0o755)
            uid = self.uid
            (etc / "passwd").write_text(f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                                        f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                                        f"tool:x:{uid}:{uid}:tool:/tmp:/bin/sh\n", encoding="ascii")
            (etc / "group").write_text(f"root:x:0:\nnogroup:x:65534:\ntool:x:{uid}:\n", encoding="ascii")
            self._etc = etc
        return self._etc

    def network_mode(self, declared: bool, command: list[str] | None = None) -> Network:
        """What a command gets: no network unless its tool declares NetworkAccess and the command is not one
        of :attr:`offline_commands`, then what the operator chose (policed by default; without a policy to
        apply, none)."""
        if command is not None and any(command[:len(words)] == words for words in self.offline_commands):
            declared = False
        mode = self.settings.network if declared else "deny"
        return "deny" if mode == "policy" and self.policy is None else mode

    def tool_network(self) -> toolnet.ToolNetwork:
        """The host side of one command's policed network (its own socket: what the policy refused is known
        per command, also when cwltool runs several at once; what they download counts against the job's one
        budget); closed with the command or the sandbox."""
        assert self.policy is not None
        net = toolnet.ToolNetwork(self.root / ".sandbox-net", self.policy, self.uid, self._budget)
        self._nets.append(net)
        return net

    def close(self) -> None:
        for net in self._nets:
            net.close()
        self._nets.clear()

    def _base(self, network: bool, made: set[str]) -> list[str]:
        """The command line's start; ``made`` collects the directories it makes (one set per command line:
        cwltool builds the command lines of parallel steps at once, from several threads)."""
        made |= {"/", "/tmp", "/etc", "/usr", "/dev", "/proc"}
        args = [self.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if not network:
            args.append("--unshare-net")
        args += ["--ro-bind", "/usr", "/usr"]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp",
                 "--ro-bind", shared_etc(), "/etc"]
        own = self._etc_files()
        args += ["--ro-bind", str(own / "passwd"), "/etc/passwd", "--ro-bind", str(own / "group"), "/etc/group"]
        for name in ETC_DIRS:
            if os.path.isdir(f"/etc/{name}"):
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        wanted = sorted({*self.readable, *(str(p) for p in self.settings.read_only_paths)})
        for path in wanted:
            if any(other != path and _within(path, other) for other in wanted):
                continue  # in a directory bound already (its links resolve in the sandbox)
            real = os.path.realpath(path)
            try:
                mode = os.stat(real).st_mode
            except OSError:
                continue
            if _within(real, "/usr") and real == path:
                continue
            args += [*self._parents(path, made), "--bind" if stat.S_ISSOCK(mode) else "--ro-bind", real, path]
        return args

    def _parents(self, path: str, made: set[str]) -> list[str]:
        """Directories leading to a bind's destination, made traversable (bwrap would make them 0700)."""
        args: list[str] = []
        parts = Path(path).parent.parts
        for i in range(2, len(parts) + 1):
            parent = str(Path(*parts[:i]))
            if parent not in made and not _within(parent, "/usr"):
                made.add(parent)
                args += ["--perms", "0755", "--dir", parent]
        return args

    def _user(self, limits: Limits) -> list[str]:
        uid = str(self.uid)
        return [*limits.prlimit(), "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]

    def command_prefix(self, writable: list[str], cwd: str, network: Network, limits: Limits,
                       net: toolnet.ToolNetwork | None = None) -> list[str]:
        """The words before a tool's command line: the job's directory read-only, ``writable`` (made the
        sandbox user's) read-write, ``cwd`` the working directory; ``network`` as :meth:`network_mode`
        says (policy: through ``net``, whose forwarder runs first; the tool needs :func:`toolnet.proxy_env`)."""
        made: set[str] = set()
        args = self._base(network == "host", made)
        args += [*self._parents(str(self.root), made), "--ro-bind", str(self.root), str(self.root)]
        for path in writable:
            _own(path, self.uid)
            args += ["--bind", path, path]
        forward: list[str] = []
        if network == "policy":
            assert net is not None
            python = _forwarder_python()
            args += [*self._parents(toolnet.SOCKET, made), "--bind", str(net.path),
                     toolnet.SOCKET, "--ro-bind", toolnet.FORWARDER_SOURCE, toolnet.FORWARDER]
            if not _within(python, "/usr"):
                args += ["--ro-bind", sys.base_prefix, sys.base_prefix]
            forward = [python, "-I", "-S", toolnet.FORWARDER, str(toolnet.PORT), toolnet.SOCKET, "--"]
        args += ["--chdir", cwd]
        return [*args, "--", *self._user(limits), *forward]

    def js_prefix(self) -> list[str]:
        """The words before ``node --eval``: nothing of the job, no network."""
        limits = Limits.ceilings(self.settings)
        return [*self._base(False, set()), "--chdir", "/tmp", "--", *self._user(limits)]

    def check_input(self, path: str, staged: str | None = None) -> None:
        """Refuse an input outside the job's directory; make one inside readable by the sandbox user (cwltool
        moves a step's outputs into directories of its own, which are private). The job's directory stays
        closed to everyone else on the host (0750, the sandbox user's group)."""
        real = os.path.realpath(path)
        root = str(self.root)
        # under an operator's local root (bound read-only as it is: its files must be readable by others), or the
        # job's own
        host = any(_within(real, allowed) for allowed in self.input_roots)
        if not host and not _within(real, root):
            raise SandboxRefused(f"the input '{os.path.basename(path) or path}' is not a file of this job: "
                                 "tools see only the job's own files")
        if not host:
            parts = Path(real).relative_to(self.root).parts
            for i in range(1, len(parts) + 1):
                _readable(os.path.join(root, *parts[:i]))
        if staged and _within(os.path.abspath(staged), root):  # cwltool's link to it, in a directory of its own
            link = Path(os.path.abspath(staged)).relative_to(self.root).parts
            for i in range(1, len(link)):
                _readable(os.path.join(root, *link[:i]))
        if os.path.isdir(real) and not host:
            for top, dirs, files in os.walk(real):
                for name in [*dirs, *files]:
                    _readable(os.path.join(top, name))

    def clean_outputs(self, outdir: str) -> None:
        """Remove what a command left in ``outdir`` that leads out of the job's directory, or is not a file,
        a directory or a link (FIFOs, sockets)."""
        root = str(self.root)
        for top, dirs, files in os.walk(outdir):
            for name in [*dirs, *files]:
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    if not _within(os.path.realpath(path), root):
                        log.warning("removed %s: a link out of the job's directory", name)
                        os.unlink(path)
                        if name in dirs:
                            dirs.remove(name)
                elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    log.warning("removed %s: not a file or a directory", name)
                    os.unlink(path)


class HidePrefix(logging.Filter):
    """Shows a sandboxed command in cwltool's log as the tool's command line alone (not bwrap's words)."""

    MARK = "--no-new-privs \\\n    -- \\\n    "
    FORWARD = f"{toolnet.FORWARDER} \\\n    {toolnet.PORT} \\\n    {toolnet.SOCKET} \\\n    -- \\\n    "

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 2 and isinstance(args[2], str) and self.MARK in args[2]:
            command = args[2].split(self.MARK, 1)[1]
            sandboxed = "(sandboxed) "
            if self.FORWARD in command:
                command, sandboxed = command.split(self.FORWARD, 1)[1], "(sandboxed, network through the policy) "
            record.args = (*args[:2], sandboxed + command, *args[3:])
        return True


@functools.lru_cache(maxsize=1)
def _forwarder_python() -> str:
    """The system's python3 (under /usr, which every sandbox sees), else this interpreter (its prefix is
    then bound read-only)."""
    return SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else os.path.realpath(sys.executable)


def _readable(path: str) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        return
    want = 0o055 if stat.S_ISDIR(st.st_mode) else 0o044 if stat.S_ISREG(st.st_mode) else 0
    if want and st.st_mode & want != want:
        os.chmod(path, stat.S_IMODE(st.st_mode) | want)


def _own(path: str, uid: int) -> None:
    """Make ``path`` (and what is in it) the sandbox user's, so that the command can write there."""
    os.chown(path, uid, uid)
    for top, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                os.chown(os.path.join(top, name), uid, uid, follow_symlinks=False)
            except OSError:
                pass


def _limits(job: Any, sandbox: Sandbox) -> Limits:
    """The tool's rlimits: its ResourceRequirement maxima and ToolTimeLimit under the server's ceilings."""
    ceilings = Limits.ceilings(sandbox.settings)
    req, _ = job.get_requirement("ResourceRequirement")

    def number(key: str) -> float | None:
        if not req or req.get(key) is None:
            return None
        value = req[key]
        if isinstance(value, str):
            value = job.builder.do_eval(value)
        return float(value) if isinstance(value, (int, float)) else None

    memory = number("ramMax")
    sizes = [v for v in (number("outdirMax"), number("tmpdirMax")) if v is not None]
    cores = number("coresMax") or number("coresMin") or 1.0
    cpu = ceilings.cpu_seconds
    if job.timelimit:
        cpu = min(cpu, int(job.timelimit * max(1.0, cores)) + 1)
    return Limits(cpu_seconds=cpu,
                  memory_mb=min(ceilings.memory_mb, int(memory)) if memory else ceilings.memory_mb,
                  open_files=ceilings.open_files, processes=ceilings.processes,
                  file_size_mb=min(ceilings.file_size_mb, int(max(sizes))) if sizes else ceilings.file_size_mb)


def _job_class() -> type:
    """cwltool's CommandLineJob whose commands run in the job's sandbox (when the run has one)."""
    from cwltool.errors import WorkflowException
    from cwltool.job import CommandLineJob
    from cwltool.loghandler import _logger as cwl_log

    log_error, log_warning = cwl_log.error, cwl_log.warning

    class SandboxedCommandLineJob(CommandLineJob):
        def _execute(self, runtime: list[str], env: MutableMapping[str, str], runtimeContext: Any,
                     monitor_function: Any = None) -> None:
            sandbox: Sandbox | None = getattr(runtimeContext, "ogcflow_sandbox", None)
            if sandbox is None:
                return super()._execute(runtime, env, runtimeContext, monitor_function)
            try:
                for entry in self.pathmapper.items_exclude_children() if hasattr(
                        self.pathmapper, "items_exclude_children") else self.pathmapper.items():
                    ent = entry[1]
                    if ent.type in ("File", "Directory", "WritableFile", "WritableDirectory") \
                            and not str(ent.resolved).startswith("_:"):
                        sandbox.check_input(ent.resolved, ent.target)
            except SandboxRefused as exc:
                raise WorkflowException(str(exc)) from None
            network = sandbox.network_mode(bool(self.networkaccess), list(self.command_line))
            net = sandbox.tool_network() if network == "policy" else None
            prefix = sandbox.command_prefix([self.outdir, self.tmpdir], self.outdir, network,
                                            _limits(self, sandbox), net)
            if net is not None:
                env.update(toolnet.proxy_env())
            collect = self.collect_outputs

            def collect_clean(outdir: str, rcode: int) -> Any:
                for reason in net.refused if net is not None else []:
                    # an ERROR line when the tool then fails: the job's failure message names it
                    (log_error if rcode else log_warning)(f"[job {self.name}] {POLICY_REFUSED} {reason}")
                sandbox.clean_outputs(outdir)
                return collect(outdir, rcode)

            self.collect_outputs = collect_clean
            try:
                return super()._execute(prefix + runtime, env, runtimeContext, monitor_function)
            finally:
                if net is not None:
                    net.close()

    return SandboxedCommandLineJob


_CLASSES: dict[str, type] = {}


def make_tool(toolpath_object: Any, loading_context: Any) -> Any:
    """cwltool's ``construct_tool_object``: CommandLineTools whose local jobs run sandboxed."""
    from cwltool.command_line_tool import CommandLineTool
    from cwltool.job import CommandLineJob
    from cwltool.workflow import default_make_tool

    tool = default_make_tool(toolpath_object, loading_context)
    if type(tool) is CommandLineTool:
        if "tool" not in _CLASSES:
            job_class = _job_class()

            class SandboxedTool(CommandLineTool):
                def make_job_runner(self, runtimeContext: Any) -> Any:
                    found = super().make_job_runner(runtimeContext)
                    return job_class if found is CommandLineJob else found

            _CLASSES["tool"] = SandboxedTool
        tool.__class__ = _CLASSES["tool"]
    return tool


def js_engine(sandbox: Sandbox) -> Any:
    """cwltool's JavaScript engine with node run in the sandbox (expressions are the package's code)."""
    from cwl_utils.sandboxjs import NodeJSEngine

    class SandboxedNodeJS(NodeJSEngine):
        localdata = threading.local()  # never a node process started outside the sandbox

        def new_js_proc(self, js_text: str, force_docker_pull: bool = False,
                        container_engine: str = "docker") -> subprocess.Popen[str]:
            node = shutil.which("nodejs") or shutil.which("node") or "node"
            proc = subprocess.Popen([*sandbox.js_prefix(), node, "--eval", js_text],  # noqa: S603
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    universal_newlines=True, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
            self.processes_to_kill.append(proc)
            return proc

    return SandboxedNodeJS()
