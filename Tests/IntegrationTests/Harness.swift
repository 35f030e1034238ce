// Integration tests drive the real binaries against real FUSE mounts. They need root and
// /dev/fuse; without them a test is skipped with the reason, except under CI=true, where it fails.
import Foundation
import Glibc
import SysKit
import XCTest

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

final class Harness {
    let dir: String
    let bin: String
    private var mounts: [String] = []
    private var daemons: [Int32] = []

    init(_ name: String) throws {
        dir = "/tmp/envmount-it-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FS.makeDirectories(dir)
        bin = Harness.binDirectory()
    }

    /// The build directory holding the test bundle also holds envmount and envpublish.
    static func binDirectory() -> String {
        let exe = String(decoding: (try? FS.readlink("/proc/self/exe".pathBytes)) ?? [], as: UTF8.self)
        var d = exe
        while !d.isEmpty && d != "/" {
            d = String(d[..<(d.lastIndex(of: "/") ?? d.startIndex)])
            if FS.exists(d + "/envmount") && FS.exists(d + "/envpublish") { return d }
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug"
    }

    /// Fails (CI) or skips (elsewhere) when real FUSE mounts cannot be made here.
    static func requireFuse() throws {
        var why: String?
        if getuid() != 0 { why = "needs root for FUSE mounts (allow_other, drop_caches)" }
        else if !FS.exists("/dev/fuse") { why = "needs /dev/fuse" }
        else if !FS.exists("/bin/fusermount3") && !FS.exists("/usr/bin/fusermount3") { why = "needs fusermount3 (apt-get install fuse3)" }
        guard let why else { return }
        if ProcessControl.environment("CI") != nil { XCTFail("FUSE integration test cannot run in CI: \(why)"); throw XCTSkip(why) }
        throw XCTSkip("FUSE integration test skipped: \(why)")
    }

    @discardableResult
    func run(_ tool: String, _ args: [String], env: [String: String] = [:]) throws -> CommandResult {
        let p = Process()
        if !env.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
        p.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : "\(bin)/\(tool)")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Read both pipes to the end before waiting, so a chatty child cannot block.
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return CommandResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }

    func publish(_ source: String, _ store: String, _ extra: [String] = []) throws -> CommandResult {
        // No publish-time profile: a mount would prefetch it and change what a test measures.
        try run("envpublish", [source, store, "--quiet", "--no-record"] + extra)
    }

    /// Mounts and remembers the mount and daemon for tearDown. Fails the test on error.
    @discardableResult
    func mount(_ store: String, _ mp: String, cache: String, _ extra: [String] = [], env: [String: String] = [:],
               file: StaticString = #filePath, line: UInt = #line) throws -> Int32 {
        try FS.makeDirectories(mp)
        let r = try run("envmount", ["mount", store, mp, "--cache-dir", cache] + extra, env: env)
        XCTAssertEqual(r.status, 0, "mount failed: \(r.stderr)", file: file, line: line)
        guard r.status == 0 else { throw XCTSkip("mount failed") }
        mounts.append(mp)
        let pid = Int32(r.stdout.components(separatedBy: "pid ").dropFirst().first?.prefix { $0.isNumber } ?? "") ?? 0
        if pid > 0 { daemons.append(pid) }
        return pid
    }

    /// Takes over cleanup of a mount made by a `run("envmount", ["mount", …])` that succeeded.
    func adopt(_ mp: String, _ r: CommandResult) throws {
        mounts.append(mp)
        if let pid = Int32(r.stdout.components(separatedBy: "pid ").dropFirst().first?.prefix { $0.isNumber } ?? "") {
            daemons.append(pid)
        }
    }

    func unmount(_ mp: String) throws -> CommandResult {
        let r = try run("envmount", ["unmount", mp])
        if r.status == 0 { mounts.removeAll { $0 == mp } }
        return r
    }

    static func isMounted(_ mp: String) -> Bool {
        guard let m = try? FS.readFile("/proc/self/mounts") else { return false }
        return String(decoding: m, as: UTF8.self).split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == mp }
    }

    /// Waits for a process to exit (it is not our child, so poll).
    static func waitForExit(_ pid: Int32, seconds: Double = 10) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if kill(pid, 0) != 0 && errno == ESRCH { return true }
            usleep(50_000)
        }
        return false
    }

    /// Unmounts what the test mounted and ends the daemons it started.
    func unmountAll() {
        for mp in mounts.reversed() {
            _ = try? run("/bin/fusermount3", ["-u", "-z", mp])
        }
        mounts = []
        for pid in daemons { if kill(pid, 0) == 0 { kill(pid, SIGTERM) } }
        for pid in daemons { _ = Harness.waitForExit(pid, seconds: 5) }
        daemons = []
    }

    /// unmountAll, then removes the test's directory.
    func cleanUp() {
        unmountAll()
        try? FS.removeTree(dir)
    }

    static func dropPageCache() {
        sync()
        if let fd = try? FileDescriptor.open("/proc/sys/vm/drop_caches", O_WRONLY) { try? fd.writeAll("3\n"); fd.close() }
    }
}


func writeFile(_ path: PathBytes, _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
    let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
    defer { fd.close() }
    try fd.writeAll(bytes)
    try FS.chmod(path, mode)
}
