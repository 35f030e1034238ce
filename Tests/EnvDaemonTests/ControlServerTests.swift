@testable import EnvDaemon
import Foundation
import Glibc
import SysKit
import XCTest

/// The control socket under abuse: idle peers, and accept failing for want of descriptors.
final class ControlServerTests: XCTestCase {
    var dir: TempDir!
    override func setUpWithError() throws { dir = try TempDir("ctl") }
    override func tearDown() { dir?.remove() }

    func request(_ path: String, _ r: ControlRequest) throws -> ControlReply {
        let fd = try UnixSocket.connect(path)
        defer { fd.close() }
        try UnixSocket.setTimeouts(fd, seconds: 30)
        try fd.writeAll(try ControlCoding.encodeLine(r))
        return try ControlCoding.decode(ControlReply.self, try fd.readLine())
    }

    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    func testAnswersAndRefusesMalformedRequests() throws {
        let path = dir.path + "/s.sock"
        let server = try ControlServer(path: path, workers: 2, ioTimeout: 5) { _ in .failed("seen") }
        defer { server.stop() }
        XCTAssertEqual(try request(path, .status), .failed("seen"))
        let fd = try UnixSocket.connect(path)
        defer { fd.close() }
        try fd.writeAll(Array(#"{"op":"status"}"#.utf8) + [0x0a])
        guard case let .failed(msg) = try ControlCoding.decode(ControlReply.self, try fd.readLine()) else { return XCTFail() }
        XCTAssertTrue(msg.contains("malformed"), msg)
        XCTAssertEqual(try FS.stat(path).mode & 0o777, 0o600)
    }

    func testIdleConnectionsAreDroppedAndStatusStillAnswers() throws {
        let path = dir.path + "/s.sock"
        let server = try ControlServer(path: path, workers: 2, ioTimeout: 0.3) { _ in .failed("ok") }
        defer { server.stop() }
        // More silent peers than workers: each holds a worker only until the read timeout.
        let idle = try (0..<8).map { _ in try UnixSocket.connect(path) }
        defer { idle.forEach { $0.close() } }
        let start = Date()
        XCTAssertEqual(try request(path, .status), .failed("ok"))
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
        // The server closed each idle peer: a read sees end of stream, not a hang.
        for fd in idle {
            try UnixSocket.setTimeouts(fd, seconds: 10)
            XCTAssertEqual(try fd.readSome(), [], "an idle connection was kept open")
        }
        XCTAssertEqual(server.timedOut.load(ordering: .relaxed), 8)
    }

    func testAcceptFailuresBackOffInsteadOfSpinning() throws {
        let path = dir.path + "/s.sock"
        let server = try ControlServer(path: path, workers: 2, ioTimeout: 30) { _ in .failed("ok") }
        defer { server.stop() }
        // Two silent peers hold both workers; three more wait in the backlog.
        let holding = try (0..<2).map { _ in try UnixSocket.connect(path) }
        let waiting = try (0..<3).map { _ in try UnixSocket.connect(path) }
        usleep(200_000)
        // No descriptor may be opened now; freeing the workers sends them into accept, which
        // fails with EMFILE while peers wait.
        var old = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &old)
        var low = old
        low.rlim_cur = 3
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low), 0)
        holding.forEach { $0.close() }
        let cpu0 = Self.cpuSeconds()
        usleep(1_500_000)
        let cpu = Self.cpuSeconds() - cpu0
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &old), 0)
        let errors = server.acceptErrors.load(ordering: .relaxed)
        XCTAssertGreaterThan(errors, 0, "accept never failed: the test did not provoke EMFILE")
        // Backing off 10 ms, 20 ms … 1 s per worker: a few dozen failures, not millions.
        XCTAssertLessThan(errors, 100, "accept was retried \(errors) times in 1.5 s")
        XCTAssertLessThan(cpu, 0.5, "the process used \(cpu) s of CPU in 1.5 s while accept failed")
        // Descriptors are back: the waiting peers are served, and so is a new request.
        waiting.forEach { $0.close() }
        XCTAssertEqual(try request(path, .status), .failed("ok"))
    }
}
