import Dispatch
import Foundation
import Glibc
import Synchronization
import SysKit
import XCTest

/// The Foundation-free runner envpublish uses for envmount and the environment's Python.
final class SubprocessTests: XCTestCase {
    func testStatusOutputAndATimeLimitThatStopsTheWholeGroup() throws {
        let out = NSTemporaryDirectory() + "subprocess-\(getpid()).out"
        defer { try? FS.unlink(out) }
        let r = try Subprocess.run(["/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 3"], outputFile: out)
        XCTAssertEqual(r.status, 3)
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(String(decoding: try FS.readFile(out), as: UTF8.self), "to-out\nto-err\n")

        // The shell's child (sleep) is in the same process group and is stopped with it.
        let t = try Subprocess.run(["/bin/sh", "-c", "sleep 30; echo late"], outputFile: out, timeoutSeconds: 0.5)
        XCTAssertTrue(t.timedOut)
        XCTAssertEqual(t.status, 128 + SIGKILL)
        XCTAssertLessThan(t.seconds, 10)

        let d = try Subprocess.run(["/bin/sh", "-c", "pwd > \(out)"], directory: "/usr")
        XCTAssertEqual(d.status, 0)
        XCTAssertEqual(String(decoding: try FS.readFile(out), as: UTF8.self), "/usr\n")

        XCTAssertThrowsError(try Subprocess.run(["/nonexistent/program"]))
    }

    /// `start`, which replaced Foundation's Process for the daemon launch and fusermount3: stdin,
    /// stdout and stderr as pipes, a process group of its own, no other descriptor inherited.
    func testStartGivesPipesAProcessGroupAndNoStrayDescriptors() throws {
        // A descriptor without close-on-exec, which posix_spawn alone would hand on.
        let stray = open("/dev/null", O_RDONLY)
        XCTAssertGreaterThan(stray, 2)
        defer { close(stray) }
        let script = "read line; echo \"got $line\"; echo to-err >&2; "
            + "test -e /proc/$$/fd/\(stray) && echo stray-open || echo stray-closed; "
            + "echo pgid $(cut -d' ' -f5 /proc/$$/stat); exit 4"
        let c = try Subprocess.start(["/bin/sh", "-c", script], stdin: .pipe, stdout: .pipe, stderr: .pipe)
        try c.input!.writeAll("hello\n")
        c.input!.close()
        let out = String(decoding: try c.output!.readAll(), as: UTF8.self)
        let err = String(decoding: try c.errorOutput!.readAll(), as: UTF8.self)
        c.output!.close(); c.errorOutput!.close()
        XCTAssertEqual(out, "got hello\nstray-closed\npgid \(c.pid)\n")
        XCTAssertEqual(err, "to-err\n")
        XCTAssertEqual(Subprocess.exitCode(waitStatus: c.waitForEnd()), 4)

        // Streams left at .null read /dev/null; endedStatus is nil while the child runs.
        let sleeper = try Subprocess.start(["/bin/sh", "-c", "read x || exec sleep 30"])
        XCTAssertNil(sleeper.input)
        XCTAssertNil(sleeper.endedStatus())
        kill(sleeper.pid, SIGKILL)
        var status: Int32?
        for _ in 0..<500 where status == nil { status = sleeper.endedStatus(); if status == nil { usleep(10_000) } }
        XCTAssertEqual(status.map { Subprocess.exitCode(waitStatus: $0) }, 128 + SIGKILL)

        XCTAssertThrowsError(try Subprocess.start(["/nonexistent/program"], stderr: .pipe)) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/program"), "\(e)")
        }
    }

    /// Worker threads without Foundation: the body runs on a thread of its own, which carries its
    /// name (cut to the kernel's 15 bytes) for top -H and perf.
    func testDetachedThreadRunsTheBodyUnderItsName() {
        let done = DispatchSemaphore(value: 0)
        let seen = Mutex<(comm: String, thread: pthread_t)>(("", 0))
        DetachedThread.start(name: "em-test-a-long-thread-name") {
            let comm = (try? FS.readFile("/proc/thread-self/comm")) ?? []
            seen.withLock { $0 = (String(decoding: comm, as: UTF8.self), pthread_self()) }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        let (comm, thread) = seen.withLock { $0 }
        XCTAssertEqual(comm, "em-test-a-long-\n")
        XCTAssertNotEqual(thread, pthread_self())
    }

    /// The signals that stop a daemon are blocked in detached threads (the kernel then gives a
    /// SIGTERM to the FUSE loop's thread), and the starting thread's mask is left as it was.
    func testDetachedThreadsBlockTheStopSignals() {
        @Sendable func blocked(_ s: Int32) -> Bool {
            var current = sigset_t()
            pthread_sigmask(SIG_BLOCK, nil, &current)
            return sigismember(&current, s) == 1
        }
        let before = DetachedThread.stopSignals.map(blocked)
        let done = DispatchSemaphore(value: 0)
        let seen = Mutex<[Bool]>([])
        DetachedThread.start(name: "em-test-mask") {
            seen.withLock { $0 = DetachedThread.stopSignals.map(blocked) }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(seen.withLock { $0 }, [true, true, true], "SIGTERM, SIGINT, SIGHUP blocked in the thread")
        XCTAssertEqual(DetachedThread.stopSignals.map(blocked), before, "the caller's mask is unchanged")
    }

    func testTrimmingWhitespaceAsFoundationDid() {
        XCTAssertEqual(" \t envmount: no\r\n\n".trimmingWhitespace(), "envmount: no")
        XCTAssertEqual("\u{a0}user_allow_other \r".trimmingWhitespace(newlines: false), "user_allow_other \r")
        XCTAssertEqual("  ".trimmingWhitespace(), "")
        XCTAssertEqual("a b"[...].trimmingWhitespace(), "a b")
    }
}
