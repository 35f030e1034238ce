// The mount daemon's failure paths and non-root use, through the real binary: bad option values,
// a missing FUSE device, a non-root user, hostile control-socket directories. Machine-wide
// paths (/dev, /run, /tmp) are replaced only inside private mount namespaces (unshare -m).
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

final class DaemonTests: MountTestCase {
    let nobody: UInt32 = 65534

    /// A published two-file store at h.dir/store.
    func publishSmall() throws -> String {
        let src = h.dir + "/src", store = h.dir + "/store"
        try FS.makeDirectories(src + "/pkg")
        try writeFile((src + "/pkg/hello.py").pathBytes, Array("print('hello from envmount')\n".utf8))
        var rng = SeededRandom(seed: 3)
        try writeFile((src + "/data.bin").pathBytes, rng.bytes(3 << 20))
        let p = try h.publish(src, store, ["--env", "small"])
        XCTAssertEqual(p.status, 0, p.stderr)
        return store
    }

    /// Runs a shell script in a private mount namespace, as root.
    func inNamespace(_ script: String) throws -> CommandResult {
        try h.run("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", script])
    }

    func assertOneLine(_ r: CommandResult, contains: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "succeeded: \(r.stdout)", file: file, line: line)
        let err = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(err.split(separator: "\n").count, 1, "not one line:\n\(err)", file: file, line: line)
        for c in contains { XCTAssertTrue(err.contains(c), "'\(c)' missing from: \(err)", file: file, line: line) }
        for bad in ["double free", "Backtrace", "Fatal error", "Crash", "fuse: "] {
            XCTAssertFalse(err.contains(bad), "'\(bad)' in: \(err)", file: file, line: line)
        }
    }

    /// `envmount mount` forks its daemon: the pid it prints is a process started as `envmount
    /// mount` (no second `envmount daemon` start), it serves the mount, and it keeps none of the
    /// caller's descriptors (here a file open as fd 7 and the caller's stdout pipe, which would
    /// keep a caller reading to end of stream waiting as long as the daemon runs).
    func testTheForkedDaemonServesAndHoldsNothingOfItsCaller() throws {
        let store = try publishSmall(), mnt = h.dir + "/mnt", held = h.dir + "/held-by-caller"
        try FS.makeDirectories(mnt)
        let cmd = [h.bin + "/envmount", "mount", store, mnt, "--cache-dir", h.dir + "/cache"].map(Servers.shellQuote).joined(separator: " ")
        let r = try h.run("/bin/sh", ["-c", "exec 7>" + Servers.shellQuote(held) + "; exec " + cmd])
        XCTAssertEqual(r.status, 0, r.stderr)
        try h.adopt(mnt, r)
        let pid = Int32(r.stdout.components(separatedBy: "pid ").dropFirst().first?.prefix { $0.isNumber } ?? "") ?? 0
        XCTAssertGreaterThan(pid, 0, r.stdout)
        let argv = try FS.readFile("/proc/\(pid)/cmdline").split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(argv.dropFirst().first, "mount", "the daemon is not the forked mount command: \(argv)")
        XCTAssertEqual(try FS.readFile(mnt + "/pkg/hello.py"), Array("print('hello from envmount')\n".utf8))
        var targets: [String] = []
        for fd in try FS.listDirectory("/proc/\(pid)/fd") {
            if let t = try? FS.readlink("/proc/\(pid)/fd/\(fd)".pathBytes) { targets.append(String(decoding: t, as: UTF8.self)) }
        }
        XCTAssertFalse(targets.contains(held), "the daemon holds its caller's fd 7: \(targets)")
        XCTAssertFalse(targets.contains { $0.hasPrefix("pipe:") }, "the daemon holds a pipe of its caller: \(targets)")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertTrue(Harness.waitForExit(pid), "daemon \(pid) still runs after unmount")
    }

    func testBadOptionValuesAreRefusedBeforeMounting() throws {
        let store = try publishSmall(), mnt = h.dir + "/mnt"
        try FS.makeDirectories(mnt)
        for v in ["nan", "inf", "1e300", "0", "-1", "-nan"] {
            let r = try h.run("envmount", ["mount", store, mnt, "--cache-dir", h.dir + "/cache", "--timeout=\(v)"])
            XCTAssertNotEqual(r.status, 0, "--timeout \(v) was taken")
            XCTAssertTrue(r.stderr.split(separator: "\n").first?.contains("--timeout must be a number of seconds more than 0") ?? false,
                          "--timeout \(v): \(r.stderr)")
            XCTAssertFalse(Harness.isMounted(mnt), "mounted with --timeout \(v)")
        }
        for (flag, v) in [("--cache-size", "0"), ("--fetch-threads", "0"), ("--kernel-cache-timeout", "nan")] {
            let r = try h.run("envmount", ["mount", store, mnt, "--cache-dir", h.dir + "/cache", "\(flag)=\(v)"])
            XCTAssertNotEqual(r.status, 0, "\(flag) \(v) was taken")
            XCTAssertTrue(r.stderr.contains(flag), r.stderr)
        }
    }

    /// /dev/fuse replaced by an empty file, then absent altogether: one line naming the device
    /// and what to do; no crash, nothing mounted.
    func testAMountWithoutTheFuseDeviceFailsWithOneLine() throws {
        let store = try publishSmall(), mnt = h.dir + "/mnt", fake = h.dir + "/fake-fuse"
        try FS.makeDirectories(mnt)
        try writeFile(fake.pathBytes, [])
        let mount = "\(h.bin)/envmount mount \(store) \(mnt) --cache-dir \(h.dir)/cache"
        for foreground in ["", " --foreground"] {
            let r = try inNamespace("mount --bind \(fake) /dev/fuse && exec \(mount)\(foreground)")
            assertOneLine(r, contains: ["/dev/fuse is not the FUSE device", "--device /dev/fuse"])
        }
        let gone = try inNamespace("""
            mkdir -p \(h.dir)/olddev && mount --rbind /dev \(h.dir)/olddev && mount -t tmpfs none /dev && \
            touch /dev/null && mount --bind \(h.dir)/olddev/null /dev/null && exec \(mount)
            """)
        assertOneLine(gone, contains: ["/dev/fuse is missing", "--device /dev/fuse", "modprobe fuse"])
        XCTAssertFalse(Harness.isMounted(mnt))
    }

    /// A user other than root mounts into a directory it owns (through fusermount3, without
    /// allow_other), reads through the mount, sees it in status, and unmounts. fusermount3 opens
    /// /dev/fuse with the user's own rights, and this machine's is 0600 (root only), so the test
    /// runs in a private mount namespace where /dev/fuse is a 0666 node of the same device, the
    /// mode hosts usually give it.
    func testANonRootUserMountsReadsAndUnmounts() throws {
        XCTAssertFalse(try FS.readFile("/etc/fuse.conf").split(separator: 0x0a).contains { $0.elementsEqual("user_allow_other".utf8) },
                       "this test expects fusermount3 to refuse allow_other to users")
        let store = try publishSmall(), d = h.dir
        let home = d + "/home", mnt = d + "/home/mnt", runtime = d + "/home/run", cache = d + "/home/cache"
        for x in [home, mnt, runtime, d + "/devnode", d + "/out"] { try FS.makeDirectories(x) }
        try FS.chmod(runtime.pathBytes, 0o700)
        _ = try h.run("/bin/chown", ["-R", "\(nobody):\(nobody)", home])
        _ = try h.run("/bin/chmod", ["-R", "a+rX", d + "/store", d + "/out"])
        let user = "setpriv --reuid=\(nobody) --regid=\(nobody) --clear-groups env -i HOME=\(home) XDG_RUNTIME_DIR=\(runtime) PATH=/usr/bin:/bin"
        let o = d + "/out"
        let r = try inNamespace("""
            set -e
            mount -t tmpfs -o mode=0755 none \(d)/devnode
            mknod -m 0666 \(d)/devnode/fuse c 10 229
            mount --bind \(d)/devnode/fuse /dev/fuse
            set +e
            trap '\(user) fusermount3 -u -z \(mnt) 2>/dev/null' EXIT
            \(user) \(h.bin)/envmount mount \(store) \(mnt) --cache-dir \(cache) >\(o)/mount.out 2>\(o)/mount.err || exit 3
            grep " \(mnt) " /proc/self/mountinfo >\(o)/mountinfo
            \(user) cat \(mnt)/pkg/hello.py >\(o)/hello 2>&1
            \(user) sha256sum \(mnt)/data.bin >\(o)/sum 2>&1
            \(user) \(h.bin)/envmount status \(mnt) >\(o)/status 2>&1
            cat \(mnt)/pkg/hello.py >/dev/null 2>\(o)/root.err && echo root-could-read >\(o)/root.err
            \(user) fusermount3 -u \(mnt) >\(o)/umount 2>&1; echo $? >>\(o)/umount
            grep -c " \(mnt) " /proc/self/mountinfo >\(o)/after
            exit 0
            """)
        func out(_ name: String) -> String { String(decoding: (try? FS.readFile(o + "/" + name)) ?? [], as: UTF8.self) }
        XCTAssertEqual(r.status, 0, "mount as uid \(nobody) failed: \(out("mount.err")) \(r.stderr)")
        let mountinfo = out("mountinfo")
        XCTAssertTrue(mountinfo.contains("user_id=\(nobody)"), mountinfo)
        XCTAssertFalse(mountinfo.contains("allow_other"), "allow_other asked for by a user: \(mountinfo)")
        XCTAssertEqual(out("hello"), "print('hello from envmount')\n")
        let want = try h.run("/usr/bin/sha256sum", [d + "/src/data.bin"])
        XCTAssertEqual(out("sum").prefix(64), want.stdout.prefix(64))
        XCTAssertTrue(out("status").contains("small revision 1"), out("status"))
        XCTAssertTrue(out("root.err").contains("Permission denied"), "without allow_other only the user reads it: \(out("root.err"))")
        XCTAssertEqual(out("umount").trimmingCharacters(in: .whitespacesAndNewlines), "0", out("umount"))
        XCTAssertEqual(out("after").trimmingCharacters(in: .whitespacesAndNewlines), "0", "still mounted after fusermount3 -u")
        XCTAssertEqual(try FS.stat(runtime + "/envmount").mode, 0o700)
        let pid = Int32(out("mount.out").components(separatedBy: "pid ").dropFirst().first?.prefix { $0.isNumber } ?? "") ?? 0
        XCTAssertGreaterThan(pid, 0, out("mount.out"))
        XCTAssertTrue(Harness.waitForExit(pid), "daemon \(pid) still runs after fusermount3 -u")
        if pid > 0 && ProcessControl.isAlive(pid) { kill(pid, SIGKILL) }
    }

    /// Without read-write access to /dev/fuse (this machine's is 0600), a user is told so in one line.
    func testANonRootUserWithoutAccessToTheDeviceIsToldWhy() throws {
        try XCTSkipIf(FS.exists("/dev/fuse") && (try FS.stat("/dev/fuse")).mode & 0o006 == 0o006, "/dev/fuse is open to everyone here")
        let store = try publishSmall(), mnt = h.dir + "/u/mnt"
        try FS.makeDirectories(mnt)
        _ = try h.run("/bin/chown", ["-R", "\(nobody):\(nobody)", h.dir + "/u"])
        _ = try h.run("/bin/chmod", ["-R", "a+rX", h.dir + "/store"])
        let r = try h.run("/usr/bin/setpriv", ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups", "/usr/bin/env", "-i",
                                               "PATH=/usr/bin:/bin", "XDG_RUNTIME_DIR=\(h.dir)/u",
                                               "\(h.bin)/envmount", "mount", store, mnt, "--cache-dir", h.dir + "/u/cache"])
        assertOneLine(r, contains: ["permission denied opening /dev/fuse", "mount as root"])
    }

    /// A control-socket directory made first by another user, or writable by others, is refused
    /// before anything is mounted: root's /run/envmount, a user's $XDG_RUNTIME_DIR/envmount, and
    /// the /tmp/envmount-UID fallback.
    func testAHostileControlDirectoryIsRefused() throws {
        let store = try publishSmall(), mnt = h.dir + "/mnt"
        try FS.makeDirectories(mnt)
        let root = try inNamespace("""
            mount -t tmpfs none /run && mkdir -m 0777 /run/envmount && chown \(nobody) /run/envmount && \
            exec \(h.bin)/envmount mount \(store) \(mnt) --cache-dir \(h.dir)/cache
            """)
        assertOneLine(root, contains: ["/run/envmount", "owned by uid \(nobody)"])
        XCTAssertFalse(Harness.isMounted(mnt))

        // A user's: the fallback in /tmp (a private tmpfs here, the test's files and the binaries bound
        // into /run, since a clone under /tmp would vanish with it).
        let user = h.dir + "/user"
        try FS.makeDirectories(user + "/mnt")
        _ = try h.run("/bin/chown", ["-R", "\(nobody):\(nobody)", user])
        _ = try h.run("/bin/chmod", ["-R", "a+rX", h.dir + "/store"])
        let asNobody = "setpriv --reuid=\(nobody) --regid=\(nobody) --clear-groups env -i PATH=/usr/bin:/bin"
        let fallback = try inNamespace("""
            mount -t tmpfs none /run && mkdir /run/t /run/bin && mount --bind \(h.dir) /run/t && mount --bind \(h.bin) /run/bin && \
            mount -t tmpfs -o mode=1777 none /tmp && mkdir -m 0777 /tmp/envmount-\(nobody) && chmod 0777 /tmp/envmount-\(nobody) && \
            exec \(asNobody) /run/bin/envmount mount /run/t/store /run/t/user/mnt --cache-dir /run/t/user/cache
            """)
        assertOneLine(fallback, contains: ["/tmp/envmount-\(nobody)", "owned by uid 0"])

        let xdg = user + "/run"
        try FS.makeDirectories(xdg + "/envmount")
        try FS.chmod((xdg + "/envmount").pathBytes, 0o777)
        _ = try h.run("/bin/chown", ["\(nobody):\(nobody)", xdg])
        _ = try h.run("/bin/chown", ["\(nobody):\(nobody)", xdg + "/envmount"])
        let writable = try h.run("/usr/bin/setpriv", ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups", "/usr/bin/env", "-i",
                                                      "PATH=/usr/bin:/bin", "XDG_RUNTIME_DIR=\(xdg)",
                                                      "\(h.bin)/envmount", "mount", store, user + "/mnt", "--cache-dir", user + "/cache"])
        assertOneLine(writable, contains: [xdg + "/envmount", "writable by other users"])
        XCTAssertFalse(Harness.isMounted(user + "/mnt"))
    }
}
