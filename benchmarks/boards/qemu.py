"""An emulated aarch64 board: Debian bookworm arm64 in QEMU (TCG), sshd on a loopback port.

    python -m benchmarks.boards.qemu build            # the image, cached (about 8 minutes, once)
    python -m benchmarks.boards.qemu start --state /tmp/board [--cpu cortex-a76]
    python -m benchmarks.boards.qemu install --state /tmp/board   # this checkout's wheel
    edgeseg bench model_int8.tflite --on "$(cat /tmp/board/address)" \\
        --ssh-config /tmp/board/ssh_config --python /home/edgeseg/venv/bin/python
    python -m benchmarks.boards.qemu stop --state /tmp/board

The image is made only from Debian packages (``mmdebstrap``; its arm64 maintainer scripts run
under qemu-user through binfmt_misc) and PyPI wheels (the aarch64 wheels of numpy, Pillow, click,
LiteRT and ONNX Runtime, at this machine's versions, in ``/opt/wheels`` on the board, so the board
installs what a user's ``pip install edgeseg`` would get, with no network). It is cached in
``$EDGESEG_CACHE`` (default ``~/.cache/edgeseg``) under ``boards/`` and named by a digest of what
went into it: change the recipe (packages, wheels, the board's init) and the next start builds a
new one; an image is never rebuilt in place.

``start`` boots it with a fresh host key and a fresh user key (a small seed disk, read at boot),
the root disk in snapshot mode (nothing a run does on the board survives ``stop``), a real core
model (never ``-cpu max``: under QEMU 7.2 its SME makes XNNPACK's int8 results wrong), and user
networking restricted to the one forwarded port: the guest reaches nothing. The state folder gets
``address`` (``ssh://edgeseg@127.0.0.1:PORT``), ``ssh_config`` (for ``ssh -F`` and
``--ssh-config``), the keys, ``console.log`` and ``qemu.pid``; ``stop`` ends that QEMU by its pid
and removes what ``start`` wrote.

Emulated time is no timing: TCG runs aarch64 code 500-1000 times slower than the CPU would, so
this board is for correctness, parity and packaging. The guest's kernel command line carries
``edgeseg.emulated=qemu-tcg``, and the harness's machine line says so.

What cannot work here is one line and exit status 3 (no QEMU, no mmdebstrap, no binfmt for arm64,
no root, no space), which the tests show as their skip reason.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import inspect
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib import metadata
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("EDGESEG_BOARD_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv", "openssh-server", "mount", "tini", "iproute2", "procps")
# unpacked, not installed (no initramfs-tools run under qemu-user: minutes): the kernel and its
# modules, and busybox for the board's own small initramfs
UNPACKED = ("linux-image-arm64", "busybox-static")
# what the initramfs loads to reach the root disk (and the network), with what they depend on
BOOT_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "virtio_net")
# the board's wheels: what the base install needs (and ONNX Runtime), at this machine's versions
WHEELS = ("numpy", "pillow", "click", "ai-edge-litert", "onnxruntime")
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
             "manylinux2014_aarch64")
USER, UID = "edgeseg", 1000
VENV = f"/home/{USER}/venv"
IMAGE_SIZE = "4G"
CPUS = ("cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1")
FREE_FOR_BUILD = 6 * 2**30
REFUSED = 3  # the exit status of a board that cannot be built or started here

# the initramfs: load the modules, mount the root disk, hand over to its init
INITRAMFS_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in $(cat /modules/order); do insmod /modules/$m; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p /newroot
mount -t ext4 -o rw /dev/vda /newroot || { echo "edgeseg-board: no root disk" >&2; exec sh; }
umount /proc /sys /dev
exec switch_root /newroot /sbin/edgeseg-init
"""
# PID 1 of the board: mount, take this start's keys from the seed disk, the network, sshd
INIT = r"""#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -o remount,rw /
# a full disk for the tests (--remote-dir /mnt/full)
mkdir -p /mnt/full && mount -t tmpfs -o size=256k,mode=1777 tmpfs /mnt/full
tar -xpf /dev/vdb -C / || echo "edgeseg-board: no seed disk" >&2
hostname edgeseg-board
modprobe virtio_net 2>/dev/null
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p /run/sshd
echo "edgeseg-board: up" >&2
exec /usr/bin/tini -- /usr/sbin/sshd -D -e
"""
SSHD_CONFIG = """PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin no
"""
KERNEL_ARGS = "console=ttyAMA0 net.ifnames=0 panic=1 edgeseg.emulated=qemu-tcg quiet"


class Refused(Exception):
    """A board that cannot be built or started here: one line."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cache_root() -> Path:
    base = os.environ.get("EDGESEG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgeseg")
    return Path(base) / "boards"


def recipe() -> dict:
    """Everything that goes into the image; its digest names the image."""
    versions = {}
    for name in WHEELS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise Refused(f"board: {name} is not installed here, and the board takes this "
                          f"machine's version of it (pip install -e '.[all]')") from None
    return {"format": 2, "suite": SUITE, "mirror": MIRROR, "packages": list(PACKAGES),
            "unpacked": list(UNPACKED), "modules": list(BOOT_MODULES),
            "initramfs": INITRAMFS_INIT, "wheels": versions, "platforms": list(PLATFORMS),
            "init": INIT,
            "sshd": SSHD_CONFIG, "user": [USER, UID], "size": IMAGE_SIZE,
            # the steps themselves: a change to how the image is made makes a new one
            "steps": [inspect.getsource(f) for f in (_build, _unpack, _customise)]}


def image_dir(spec: dict | None = None) -> Path:
    spec = spec or recipe()
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / f"aarch64-{SUITE}-{digest}"


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise Refused(f"board: no {tool} here (apt-get install {package})")
    return path


def _check_binfmt() -> None:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    try:
        enabled = entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise Refused("board: arm64 programs do not run here (binfmt_misc has no enabled "
                      "qemu-aarch64: apt-get install qemu-user-static binfmt-support, then mount "
                      "-t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc and update-binfmts "
                      "--enable qemu-aarch64)")


def _run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise Refused(f"board: {what} failed (exit {done.returncode}"
                      f"{': ' + said[-1][:300] if said else ''})")
    return done


def build() -> Path:
    """The image for this recipe: the cached one, or built now (then cached)."""
    spec = recipe()
    final = image_dir(spec)
    if (final / "image.json").is_file():
        return final
    _need("qemu-system-aarch64", "qemu-system-arm")
    mmdebstrap = _need("mmdebstrap", "mmdebstrap")
    for tool, package in (("mke2fs", "e2fsprogs"), ("unshare", "util-linux"), ("cpio", "cpio"),
                          ("depmod", "kmod"), ("modprobe", "kmod"), ("dpkg-deb", "dpkg")):
        _need(tool, package)
    if os.geteuid() != 0:
        raise Refused("board: building the image needs root (mmdebstrap into a folder and "
                      "mke2fs -d keep the files' owners)")
    _check_binfmt()
    final.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(final.parent).free
    if free < FREE_FOR_BUILD:
        raise Refused(f"board: {final.parent} has {free / 2**30:.1f} GiB free; building the "
                      f"image needs {FREE_FOR_BUILD / 2**30:.0f} GiB")
    with open(final.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; another may just have made it
        if (final / "image.json").is_file():
            return final
        for stale in final.parent.glob(f"{final.name}.partial.*"):  # a build that was killed
            _remove(stale)
        return _build(final, spec, mmdebstrap)


def _remove(folder: Path) -> None:
    """Remove a build folder, never through a mount point left inside it."""
    inside = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(folder) + "/")]
    for mount in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def _build(final: Path, spec: dict, mmdebstrap: str) -> Path:
    work = Path(tempfile.mkdtemp(prefix=final.name + ".partial.", dir=final.parent))
    started = time.monotonic()
    try:
        root, debs = work / "root", work / "debs"
        debs.mkdir()
        _say(f"board: building {final.name} (Debian {SUITE} arm64; several minutes)")
        hooks = Path("/usr/share/mmdebstrap/hooks/eatmydata")
        # the .debs of what is unpacked, not installed, fetched while apt is set up in the root
        fetch = (f'chroot "$1" sh -c \'cd /tmp && apt-get download -q $(apt-cache depends '
                 f'linux-image-arm64 | sed -n "s/^ *Depends: \\(linux-image-[0-9].*\\)$/\\1/p"'
                 f' | head -n 1) {" ".join(UNPACKED[1:])}\' && mv "$1"/tmp/*.deb {debs}/')
        # in a mount namespace of its own: what it mounts in the root goes when it ends
        command = ["unshare", "--mount", "--propagation", "private", mmdebstrap, "--arch=arm64",
                   "--variant=apt", "--components=main", f"--include={','.join(PACKAGES)}",
                   *([f"--hook-dir={hooks}"] if hooks.is_dir() else []),
                   f"--customize-hook={fetch}", SUITE, str(root), MIRROR]
        _run(command, "mmdebstrap")
        debian_seconds = time.monotonic() - started
        kernel = _unpack(root, debs, work)
        _customise(root, spec)
        _run(["mke2fs", "-q", "-t", "ext4", "-L", "edgeseg-root", "-d", str(root), "-F",
              str(work / "disk.img"), IMAGE_SIZE], "mke2fs")
        _remove(root)
        shutil.rmtree(debs)
        (work / "image.json").write_text(json.dumps(
            {"recipe": spec, "kernel": kernel,
             "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "seconds": {"debian": round(debian_seconds, 1),
                         "total": round(time.monotonic() - started, 1)}}, indent=1))
        work.rename(final)
    except BaseException:
        _remove(work)
        raise
    _say(f"board: built {final} in {time.monotonic() - started:.0f} s")
    return final


def _unpack(root: Path, debs: Path, work: Path) -> str:
    """The kernel to ``work/vmlinuz``, its modules into the root, and ``work/initrd.img``: busybox,
    :data:`BOOT_MODULES` in load order, :data:`INITRAMFS_INIT`. Returns the kernel's release."""
    unpacked = work / "unpacked"
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"dpkg-deb -x {deb.name}")
    kernels = sorted((unpacked / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise Refused(f"board: no kernel among {', '.join(p.name for p in debs.glob('*.deb'))}")
    release = kernels[-1].name[len("vmlinuz-"):]
    shutil.copy(kernels[-1], work / "vmlinuz")
    modules = next(p for p in (unpacked / "lib/modules", unpacked / "usr/lib/modules")
                   if p.is_dir())
    target = root / "usr/lib/modules" if (root / "usr/lib/modules").parent.is_dir() else \
        root / "lib/modules"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(modules / release, target / release)
    _run(["depmod", "-b", str(root), release], "depmod of the board's modules")
    order = _run(["modprobe", "-a", "-d", str(root), "-S", release, "--show-depends",
                  *BOOT_MODULES],
                 "modprobe --show-depends").stdout.split()
    ramfs = work / "initramfs"
    for name in ("bin", "dev", "proc", "sys", "modules"):
        (ramfs / name).mkdir(parents=True)
    loaded = []
    for word in order:
        if word.endswith(".ko") and Path(word).name not in loaded:
            word = str(root) + word if not word.startswith(str(root)) else word
            shutil.copy(word, ramfs / "modules")
            loaded.append(Path(word).name)
    (ramfs / "modules/order").write_text("\n".join(loaded) + "\n")
    busybox = next(unpacked.glob("**/bin/busybox"))
    shutil.copy(busybox, ramfs / "bin/busybox")
    (ramfs / "init").write_text(INITRAMFS_INIT)
    (ramfs / "init").chmod(0o755)
    os.mknod(ramfs / "dev/console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    names = sorted(str(p.relative_to(ramfs)) for p in ramfs.rglob("*"))
    with open(work / "initrd.img", "wb") as out:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=ramfs,
                       input="\n".join(names).encode(), stdout=out, check=True)
    shutil.rmtree(unpacked)
    shutil.rmtree(ramfs)
    return release


def _customise(root: Path, spec: dict) -> None:
    """The board's user, sshd, init and wheels, written into the arm64 root."""
    # '*': no password, and not locked (sshd refuses a locked account its keys)
    _run(["chroot", str(root), "useradd", "-m", "-u", str(UID), "-s", "/bin/bash", "-p", "*",
          USER], "useradd in the arm64 root")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every start brings its own
    (root / "etc/ssh/sshd_config.d/edgeseg.conf").write_text(SSHD_CONFIG)
    init = root / "sbin/edgeseg-init"
    init.write_text(INIT)
    init.chmod(0o755)
    (root / "etc/hostname").write_text("edgeseg-board\n")
    wheels = root / "opt/wheels"
    wheels.mkdir(parents=True)
    pins = [f"{name}=={version}" for name, version in spec["wheels"].items()]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
          "--dest", str(wheels), *platforms, "--only-binary=:all:", "--python-version", "3.11",
          "--implementation", "cp", "--abi", "cp311", *pins], "pip download of the aarch64 wheels")


# --- a running board -----------------------------------------------------------------------------
def _keygen(path: Path) -> None:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeseg-board", "-f", str(path)],
         "ssh-keygen")


def _seed(state: Path) -> Path:
    """A tar (the guest reads it from /dev/vdb at boot): this start's host key and user key."""
    def add(tar, name, data: bytes, mode, uid=0, kind=tarfile.REGTYPE):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, time.time()
        if kind == tarfile.REGTYPE:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        else:
            tar.addfile(info)

    path = state / "seed.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        add(tar, "etc/ssh/ssh_host_ed25519_key", (state / "host_key").read_bytes(), 0o600)
        add(tar, "etc/ssh/ssh_host_ed25519_key.pub", (state / "host_key.pub").read_bytes(), 0o644)
        add(tar, f"home/{USER}/.ssh", b"", 0o700, UID, tarfile.DIRTYPE)
        add(tar, f"home/{USER}/.ssh/authorized_keys", (state / "user_key.pub").read_bytes(),
            0o600, UID)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


STATE_FILES = ("address", "ssh_config", "known_hosts", "host_key", "host_key.pub", "user_key",
               "user_key.pub", "seed.tar", "console.log", "qemu.pid", "board.json")


def start(state: Path, cpu: str = "cortex-a72", memory_mb: int = 2048, smp: int = 2,
          timeout: float = 420) -> str:
    """Boot the board; returns its ``ssh://`` address (also in ``state/address``)."""
    if cpu not in CPUS:
        raise Refused(f"board: --cpu {cpu}: choose a real core model ({', '.join(CPUS)}); "
                      f"'max' has SME under QEMU 7.2, and XNNPACK's int8 results are wrong there")
    if state.exists() and (not state.is_dir() or any(state.iterdir())):  # the output first
        raise Refused(f"board: --state {state}: not an empty folder (a running board's state? "
                      f"stop it first)")
    qemu = _need("qemu-system-aarch64", "qemu-system-arm")
    _need("ssh", "openssh-client")
    _need("ssh-keygen", "openssh-client")
    image = build()
    state.mkdir(parents=True, exist_ok=True)
    _keygen(state / "host_key")
    _keygen(state / "user_key")
    seed = _seed(state)
    port = _free_port()
    host_key = " ".join((state / "host_key.pub").read_text().split()[:2])
    (state / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (state / "ssh_config").write_text(
        f"Host *\n  IdentityFile {state / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {state / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
        f"  StrictHostKeyChecking yes\n  LogLevel ERROR\n")
    address = f"ssh://{USER}@127.0.0.1:{port}"
    command = [qemu, "-M", "virt", "-cpu", cpu, "-smp", str(smp), "-m", str(memory_mb),
               "-accel", "tcg,thread=multi", "-display", "none", "-no-reboot",
               "-serial", f"file:{state / 'console.log'}", "-monitor", "none",
               "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
               "-append", KERNEL_ARGS,
               "-drive", f"if=none,id=root,file={image / 'disk.img'},format=raw,snapshot=on",
               "-device", "virtio-blk-pci,drive=root",
               "-drive", f"if=none,id=seed,file={seed},format=raw,readonly=on",
               "-device", "virtio-blk-pci,drive=seed",
               "-netdev", f"user,id=net,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
               "-device", "virtio-net-pci,netdev=net,romfile=",
               "-pidfile", str(state / "qemu.pid")]
    started = time.monotonic()
    try:
        return _boot(state, command, address, port, cpu, image, started, timeout)
    except BaseException:
        stop(state, remove=False)  # console.log stays for a look; stop --state removes it
        raise


def _boot(state, command, address, port, cpu, image, started, timeout) -> str:
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=open(state / "console.log", "ab"), start_new_session=True)
    (state / "board.json").write_text(json.dumps(
        {"address": address, "port": port, "cpu": cpu, "image": str(image), "pid": process.pid,
         "command": command}, indent=1))
    while True:
        if process.poll() is not None:
            raise Refused(f"board: QEMU ended at once (exit {process.returncode}): "
                          f"{_console_tail(state)}")
        done = subprocess.run(["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes",
                               "-o", "ConnectTimeout=10", "-p", str(port), f"{USER}@127.0.0.1",
                               "true"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode == 0:
            break
        if time.monotonic() - started > timeout:
            raise Refused(f"board: no sshd on the board after {timeout:.0f} s "
                          f"({_console_tail(state)})")
        time.sleep(2)
    (state / "address").write_text(address + "\n")
    _say(f"board: {cpu} up in {time.monotonic() - started:.0f} s at {address} "
         f"(ssh -F {state / 'ssh_config'}; emulated: latency is not a timing)")
    return address


def _console_tail(state: Path) -> str:
    try:
        lines = [line for line in (state / "console.log").read_text(errors="replace")
                 .splitlines() if line.strip()]
    except OSError:
        return "no console output"
    return " | ".join(lines[-3:])[:400] or "no console output"


def _pid(state: Path) -> int | None:
    """The QEMU this state folder started, if it still runs (checked by its command line)."""
    try:
        pid = int((state / "qemu.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    if b"qemu-system-aarch64" not in Path(cmdline[0].decode(errors="replace")).name.encode() or \
            str(state / "seed.tar").encode() not in b" ".join(cmdline):
        return None
    return pid


def stop(state: Path, remove: bool = True) -> bool:
    """End the board's QEMU by its pid; with ``remove``, the files ``start`` wrote go too.
    Returns whether a board was running."""
    pid = _pid(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid(state) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid(state) is not None:
            os.kill(pid, signal.SIGKILL)
    if remove:
        for name in STATE_FILES:
            (state / name).unlink(missing_ok=True)
        try:
            state.rmdir()
        except OSError:
            pass  # something else is in it: not ours to remove
    return pid is not None


def ssh(state: Path, script: str, *, timeout: float = 600, stdin: bytes | None = None) \
        -> subprocess.CompletedProcess:
    """Run a shell script on the board (as its user)."""
    board = json.loads((state / "board.json").read_text())
    return subprocess.run(["ssh", "-F", str(state / "ssh_config"), "-o", "BatchMode=yes",
                           "-p", str(board["port"]), f"{USER}@127.0.0.1", script],
                          input=stdin, capture_output=True, timeout=timeout,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def wheel(out: Path) -> Path:
    """This checkout as a wheel (pip wheel, no dependencies)."""
    checkout = Path(__file__).resolve().parents[2]
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
          "--disable-pip-version-check", "-w", str(out), str(checkout)],
         "pip wheel of this checkout")
    found = sorted(out.glob("edgeseg-*.whl"))
    if not found:
        raise Refused(f"board: pip wheel wrote no edgeseg wheel in {out}")
    return found[-1]


def install(state: Path, extra: tuple[str, ...] = ("onnxruntime",)) -> str:
    """Install this checkout's wheel on the board, as a user would on a Pi: a venv, then
    ``pip install edgeseg-*.whl`` from the board's wheels (no network). Returns the venv's
    Python."""
    with tempfile.TemporaryDirectory() as tmp:
        built = wheel(Path(tmp))
        started = time.monotonic()
        done = ssh(state, f"cat > /tmp/{built.name}", stdin=built.read_bytes(), timeout=120)
        if done.returncode:
            raise Refused(f"board: copying {built.name} failed "
                          f"({done.stderr.decode(errors='replace').strip()[-200:]})")
    script = (f"set -e; rm -rf {VENV}; python3 -m venv {VENV}; "
              f"{VENV}/bin/pip install --quiet --disable-pip-version-check --no-index "
              f"--find-links /opt/wheels /tmp/{built.name} {' '.join(extra)}; "
              f"{VENV}/bin/edgeseg --version")
    done = ssh(state, script, timeout=1800)
    if done.returncode:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise Refused(f"board: pip install of {built.name} on the board failed"
                      f"{': ' + said[-1][:300] if said else ''}")
    _say(f"board: {done.stdout.decode().strip()} installed in {VENV} in "
         f"{time.monotonic() - started:.0f} s (emulated)")
    return f"{VENV}/bin/python"


def _interrupted(*_) -> None:
    """SIGTERM as Ctrl-C: a stopped build removes its partial folder."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boards.qemu",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the image (cached) and print its folder")
    for name, text in (("start", "boot the board; print its ssh:// address"),
                       ("install", "install this checkout's wheel on a running board"),
                       ("stop", "stop the board by its pid; remove what start wrote")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--state", type=Path, required=True,
                         help="the board's state folder (start: empty or new)")
        if name == "start":
            sub.add_argument("--cpu", default="cortex-a72", help=f"one of {', '.join(CPUS)}")
            sub.add_argument("--memory", type=int, default=2048, help="MiB [2048]")
            sub.add_argument("--install", action="store_true",
                             help="then install this checkout's wheel on it")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        if args.command == "build":
            print(build())
        elif args.command == "start":
            print(start(args.state.resolve(), args.cpu, args.memory))
            if args.install:
                print(install(args.state.resolve()))
        elif args.command == "install":
            if _pid(args.state.resolve()) is None:
                raise Refused(f"board: --state {args.state}: no board running from it")
            print(install(args.state.resolve()))
        else:
            if not stop(args.state.resolve()):
                _say(f"board: --state {args.state}: no board was running from it")
    except Refused as refused:
        _say(str(refused))
        return REFUSED
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
