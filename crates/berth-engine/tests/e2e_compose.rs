//! End to end, as root: a docker-compose (v1, Debian's `docker-compose`) project
//! against a private berth-manager + berthd stack: a service built from a Dockerfile
//! (through docker-py's build, as compose does it without the docker CLI), an image
//! service with a health check the built one waits for (`depends_on: condition:
//! service_healthy`), a named volume both mount, a port published on 127.0.0.1,
//! `init: true`, environment and a user network on which the services find each
//! other by name. `up -d --build`, `ps`, `logs`, `exec`, `restart`, then `down -v`
//! leaves no container, volume, network, veth or namespace behind.
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime
//! -p berth-engine -p berth-cli -p berth-init` with the same CARGO_TARGET_DIR.
//! One test in this file: the guard reaps every zombie child of the process.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{stdout, Stack};

const COMPOSE: &str = "/usr/bin/docker-compose";

/// Every command is bounded: a hung compose fails the test instead of CI.
const LIMIT_S: &str = "300";

const PROJECT: &str = r#"version: "2.4"
services:
  db:
    image: busybox
    init: true
    command: ["sh", "-c", "echo stored > /data/value && touch /tmp/ready && exec sleep 3600"]
    volumes:
      - data:/data
    networks: [back]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 60
  web:
    build: ./web
    init: true
    environment:
      GREETING: hello-compose
    ports:
      - "127.0.0.1::8080"
    volumes:
      - data:/data:ro
    networks: [back]
    depends_on:
      db:
        condition: service_healthy
volumes:
  data:
networks:
  back:
    driver_opts:
      com.docker.network.bridge.name: BRIDGE
"#;

const WEB_DOCKERFILE: &str = r#"FROM busybox
RUN mkdir /www
COPY start.sh /start.sh
EXPOSE 8080
CMD ["sh", "/start.sh"]
"#;

/// What web serves: its environment, what db wrote into the shared volume, and
/// whether db's name resolves on the project network. db is healthy before web's
/// first start, but `docker-compose restart` restarts both at once, so web may come
/// up while db is still down: it asks again for a while instead of once.
const WEB_START: &str = r#"r=""; for i in $(seq 30); do ping -c1 -W1 db >/dev/null 2>&1 && r=db-reachable && break; sleep 0.5; done
echo "$GREETING $(cat /data/value) $r" > /www/index.html
echo web-starting
exec httpd -f -p 8080 -h /www
"#;

const SERVED: &str = "hello-compose stored db-reachable";

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

struct Project<'a> {
    stack: &'a Stack,
    dir: PathBuf,
    name: String,
}

impl Project<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("timeout")
            .args(["-k", "10", LIMIT_S, COMPOSE, "-p", &self.name])
            .args(args)
            .current_dir(&self.dir)
            .env("DOCKER_HOST", self.stack.host())
            .env("DOCKER_CONFIG", self.stack.path("docker-config"))
            // docker-py's build (the API directly), not the docker CLI's.
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "$ docker-compose {}\n  exit {:?}\n  stdout {:?}\n  stderr {:?}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "docker-compose {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.stack.logs()
        );
        format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr))
    }

    /// The host address of web's published port.
    fn web_address(&self) -> String {
        let out = self.run(&["port", "web", "8080"]);
        let addr = stdout(&out).trim().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        addr
    }
}

/// The body of `GET /` at `addr`, if it answers.
fn get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (_, body) = buf.split_once("\r\n\r\n")?;
    Some(body.trim().to_string())
}

fn served(addr: &str) {
    let mut last = None;
    let found = support::eventually_or_none(|| {
        last = get(addr);
        last.as_deref().filter(|b| *b == SERVED).map(|_| ())
    });
    assert!(
        found.is_some(),
        "web never served {SERVED:?} on {addr}; last answer: {last:?}"
    );
}

#[test]
fn compose_project_builds_runs_and_goes() {
    let _serial = support::serial();
    if !berth_testutil::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    if !Path::new(COMPOSE).is_file() {
        eprintln!("skipping: no {COMPOSE} (apt-get install docker-compose)");
        return;
    }
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    let work = tempfile::tempdir().unwrap();
    let bridge = support::unique_bridge("bn");
    write(
        work.path(),
        "docker-compose.yml",
        &PROJECT.replace("BRIDGE", &bridge),
    );
    write(work.path(), "web/Dockerfile", WEB_DOCKERFILE);
    write(work.path(), "web/start.sh", WEB_START);
    let project = Project {
        stack: &stack,
        dir: work.path().to_path_buf(),
        name: format!("bc{}", &bridge[2..]),
    };

    let log = project.ok(&["up", "-d", "--build"]);
    assert!(log.contains("Successfully built"), "{log}");
    let ps = project.ok(&["ps"]);
    let db = format!("{}_db_1", project.name);
    let web = format!("{}_web_1", project.name);
    for name in [&db, &web] {
        assert_eq!(ps.matches(name.as_str()).count(), 1, "{ps}");
    }
    assert!(ps.contains("(healthy)"), "{ps}");
    assert!(ps.contains("127.0.0.1:"), "{ps}");
    let addr = project.web_address();
    served(&addr);
    // Published on 127.0.0.1 only: the same port on another address of the host
    // (the default bridge's gateway) is not web.
    let port = addr.rsplit_once(':').unwrap().1;
    let gateway = stack.bip.split('/').next().unwrap();
    let other = get(&format!("{gateway}:{port}"));
    assert!(other.as_deref() != Some(SERVED), "{other:?}");

    let logs = project.ok(&["logs", "--no-color", "web"]);
    assert!(logs.contains("web-starting"), "{logs}");
    let env = project.ok(&["exec", "-T", "web", "sh", "-c", "echo $GREETING"]);
    assert_eq!(env.trim(), "hello-compose");
    // init: true puts berth-init at PID 1 in front of the service's command.
    let pid1 = project.ok(&["exec", "-T", "web", "cat", "/proc/1/cmdline"]);
    assert!(pid1.starts_with("/sbin/berth-init"), "{pid1:?}");

    project.ok(&["restart"]);
    // The host port is ephemeral: it may change with the restart.
    served(&project.web_address());
    let logs = project.ok(&["logs", "--no-color", "web"]);
    assert_eq!(logs.matches("web-starting").count(), 2, "{logs}");

    let log = project.ok(&["down", "-v"]);
    assert!(log.contains("Removing volume"), "{log}");
    assert_eq!(stack.ok(&berth, &["ps", "-aq"]).trim(), "");
    assert_eq!(stack.ok(&berth, &["volume", "ls", "-q"]).trim(), "");
    let nets = stack.ok(&berth, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains(&project.name), "{nets}");
    assert_eq!(
        support::network_leftovers(&stack, &bridge),
        Vec::<String>::new()
    );
    let link = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(
        !link.status.success(),
        "the project's bridge {bridge} is still there"
    );
    assert_eq!(
        support::network_leftovers(&stack, &stack.bridge),
        Vec::<String>::new()
    );
    assert!(get(&addr).is_none(), "still served after down");
}
