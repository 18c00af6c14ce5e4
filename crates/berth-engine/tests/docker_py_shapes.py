"""docker-py against berthd: the shapes docker-py's own integration suite relies on.

Usage: python docker_py_shapes.py unix:///path/to/berth.sock

Each check is one that docker-py 7.2.0's integration tests make and dockerd passes;
the script exits non-zero with what differed.
"""

import shutil
import sys
import time

import docker


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")


def main():
    url = sys.argv[1]
    api = docker.APIClient(base_url=url, version="auto")
    ct = api.create_container("busybox", ["sleep", "1000"])
    api.start(ct)
    try:
        # An exec created with a TTY runs on one (\r\n) even when started without
        # `Tty`, which only asks for multiplexed frames: all of it is stdout.
        cmd = ["sh", "-c", "echo hello out; echo hello err >&2"]
        ex = api.exec_create(ct, cmd, tty=True)
        check("tty exec, demux", api.exec_start(ex, demux=True),
              (b"hello out\r\nhello err\r\n", None))
        ex = api.exec_create(ct, cmd, tty=False)
        check("exec, demux", api.exec_start(ex, demux=True),
              (b"hello out\n", b"hello err\n"))
    finally:
        api.remove_container(ct, force=True)

    # ctrl-p ctrl-q on an attached TTY's stdin detaches: berthd closes the connection
    # and the container goes on.
    ct = api.create_container("busybox", "cat", stdin_open=True, tty=True)
    api.start(ct)
    try:
        sock = api.attach_socket(ct, {"stdin": True, "stream": True})
        raw = getattr(sock, "_sock", sock)
        for key in (b"\x10", b"\x11"):
            raw.sendall(key)
            time.sleep(0.3)
        raw.settimeout(10)
        try:
            raw.sendall(b"still there?\n")
            data = raw.recv(128)
        except OSError:
            data = b""
        check("read after detach", data, b"")
        check("running after detach", api.inspect_container(ct)["State"]["Running"], True)
    finally:
        api.remove_container(ct, force=True)

    # A container with the restart policy `always`: `wait` ends at its exit.
    ct = api.create_container(
        "busybox", ["sleep", "1"],
        host_config=api.create_host_config(restart_policy={"Name": "always"}))
    api.start(ct)
    try:
        check("wait on a restarting container", api.wait(ct, timeout=60)["StatusCode"], 0)
    finally:
        api.remove_container(ct, force=True)

    # prune answers what the removed containers had written.
    ct = api.create_container("busybox", ["sh", "-c", "echo hello > /data.txt"])
    api.start(ct)
    api.wait(ct)
    res = api.prune_containers()
    check("pruned", ct["Id"] in res["ContainersDeleted"], True)
    if not res["SpaceReclaimed"] > 0:
        sys.exit(f"prune reclaimed {res['SpaceReclaimed']!r}")
    # A bad archive: the error comes in the stream, as ImageLoadError.
    client = docker.DockerClient(base_url=url, version="auto")
    try:
        client.images.load(b"abc")
        sys.exit("images.load of a bad archive raised nothing")
    except docker.errors.ImageLoadError:
        pass

    # `runtime=` travels beside the Config; runc runs the container when installed.
    if shutil.which("runc"):
        ct = api.create_container("busybox", ["true"], runtime="runc")
        try:
            check("runtime", api.inspect_container(ct)["HostConfig"]["Runtime"], "runc")
        finally:
            api.remove_container(ct, force=True)

    # Detach keys from the client's config reach exec as `detachKeys`.
    api._general_configs["detachKeys"] = "ctrl-x"
    ct = api.create_container("busybox", "cat", stdin_open=True, tty=True)
    api.start(ct)
    try:
        ex = api.exec_create(ct, "cat", stdin=True, tty=True)
        sock = api.exec_start(ex, socket=True, tty=True)
        raw = getattr(sock, "_sock", sock)
        raw.sendall(b"\x18")
        time.sleep(0.3)
        raw.settimeout(10)
        try:
            raw.sendall(b"still there?\n")
            data = raw.recv(128)
        except OSError:
            data = b""
        check("exec read after detach", data, b"")
    finally:
        api.remove_container(ct, force=True)
    print("docker-py shapes ok")


if __name__ == "__main__":
    main()
