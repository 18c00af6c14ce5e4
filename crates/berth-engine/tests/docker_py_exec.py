"""docker-py against berthd: exec_run gets both streams and the exit code.

Usage: python docker_py_exec.py unix:///path/to/berth.sock [ROUNDS]

Scripts and test frameworks (testcontainers and the like) are built on exactly
these calls: exec_run(cmd, demux=True) must return (stdout, stderr) whole, and
exec_run(cmd) the exit code with the output, every time.
"""

import sys

import docker


def main():
    url = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    client = docker.DockerClient(base_url=url, version="auto")
    ct = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    try:
        for i in range(rounds):
            r = ct.exec_run(["sh", "-c", "echo hello out; echo hello err >&2"], demux=True)
            want = (b"hello out\n", b"hello err\n")
            if r.output != want or r.exit_code != 0:
                sys.exit(f"round {i}: demux exec_run gave {r.exit_code!r} {r.output!r}, want 0 {want!r}")
            r = ct.exec_run("echo hello")
            if (r.exit_code, r.output) != (0, b"hello\n"):
                sys.exit(f"round {i}: exec_run('echo hello') gave {(r.exit_code, r.output)!r}")
        r = ct.exec_run(["sh", "-c", "exit 7"])
        if r.exit_code != 7:
            sys.exit(f"exec_run exit 7 gave {r.exit_code!r}")
        r = ct.exec_run("nosuchcmd")
        if r.exit_code != 127:
            sys.exit(f"exec_run of a missing command gave {r.exit_code!r}, want 127")
        print(f"docker-py: {rounds} rounds of exec_run ok")
    finally:
        ct.remove(force=True)


if __name__ == "__main__":
    main()
