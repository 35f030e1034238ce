import Glibc
@testable import SysKit
import XCTest

/// The O_PATH directory opens the tree check walks with (openat2, and the per-component
/// fallback for kernels without it) refuse a symlink anywhere on the way and never leave the
/// root; statNames reports each name's facts or its errno.
final class DirectoryWalkTests: XCTestCase {
    func testBothOpensRefuseASymlinkOnTheWayAndStatNamesReportsEachName() throws {
        let dir = try TempDir("walk")
        defer { dir.remove() }
        func p(_ s: String) -> PathBytes { dir.bytes.appendingComponent(Array(s.utf8)) }
        try Disk.mkdir(p("a"))
        try Disk.mkdir(p("a/b"))
        try Disk.mkdir(p("a/b/c"))
        try Disk.write(p("a/b/c/f"), [1, 2, 3])
        try FS.symlink(target: Array("a".utf8), at: p("link"))
        try FS.symlink(target: Array("c".utf8), at: p("a/b/l2"))
        let root = try FileDescriptor.openDirectory(dir.bytes)
        defer { root.close() }
        XCTAssertThrowsError(try FileDescriptor.openDirectory(p("link")), "a symlink as the last component")

        let opens: [(String, (PathBytes) throws -> FileDescriptor)] = [
            ("openat2", root.openDirectory(beneath:)), ("per component", root.openDirectoryByComponents(beneath:)),
        ]
        for (how, open) in opens {
            let c = try open(Array("a/b/c".utf8))
            let names = Array("fmissingc".utf8)
            let st = c.statNames(names, starts: [0, 1], lengths: [1, 7])
            c.close()
            XCTAssertEqual(st[0].errno, 0, how)
            XCTAssertEqual(st[0].kind, .regular, how)
            XCTAssertEqual(st[0].size, 3, how)
            XCTAssertEqual(st[0].inode, try FS.lstat(p("a/b/c/f")).inode, how)
            XCTAssertEqual(st[1].errno, ENOENT, how)
            let b = try open(Array("a/b".utf8))
            let sub = b.statNames(names, starts: [8], lengths: [1])
            b.close()
            XCTAssertEqual(sub[0].kind, .directory, how)
            for bad in ["link/b/c", "link", "a/b/l2", "a/../../x"] {
                XCTAssertThrowsError(try open(Array(bad.utf8)), "\(how): \(bad)") { error in
                    XCTAssertTrue([ELOOP, ENOTDIR, EXDEV].contains((error as? SystemError)?.errno ?? 0), "\(how): \(bad): \(error)")
                }
            }
        }
    }

    /// The one-statx answer a mount uses before reading mountinfo: "nothing mounted here" only
    /// where the kernel says so, never for a mount root or a path it cannot stat.
    func testSurelyNotMountRootAnswersOnlyWhenTheKernelSays() throws {
        let dir = try TempDir("mountroot")
        defer { dir.remove() }
        XCTAssertTrue(FS.surelyNotMountRoot(dir.path), "a plain directory")
        XCTAssertFalse(FS.surelyNotMountRoot("/proc"), "the root of the proc mount")
        XCTAssertFalse(FS.surelyNotMountRoot("/"), "the root of the root mount")
        XCTAssertFalse(FS.surelyNotMountRoot(dir.path + "/missing"), "a path that cannot be stat'ed")
        guard getuid() == 0 else { return }
        try FS.mount(source: "tmpfs", target: dir.path, type: "tmpfs", options: "size=1m")
        defer { try? FS.unmount(dir.path) }
        XCTAssertFalse(FS.surelyNotMountRoot(dir.path), "a tmpfs mounted there")
        // statx's mount ID is mountinfo's: the daemon keeps it to take down only its own overlay.
        XCTAssertEqual(FS.mountID(dir.path), MountTable.find(dir.path)?.id)
        XCTAssertEqual(FS.mountID("/proc"), MountTable.find("/proc")?.id)
        XCTAssertNotEqual(FS.mountID(dir.path), FS.mountID("/proc"))
    }

    /// `FS.readFile` reads a regular file at its size in one call, and files that say size 0
    /// whole: a sysctl file answers only its first read (the hostname recorded by a publish).
    func testReadFileReadsRegularFilesAndProcFilesWhole() throws {
        let dir = try TempDir("readfile")
        defer { dir.remove() }
        for n in [0, 1, 4095, 4096, 65536, 200_001] {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try Disk.write((dir.path + "/f\(n)").pathBytes, bytes)
            XCTAssertEqual(try FS.readFile(dir.path + "/f\(n)"), bytes, "\(n) bytes")
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count)
        XCTAssertEqual(String(decoding: try FS.readFile("/proc/sys/kernel/hostname"), as: UTF8.self),
                       String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "\n")
        let pidMax = String(decoding: try FS.readFile("/proc/sys/kernel/pid_max"), as: UTF8.self)
        XCTAssertGreaterThanOrEqual(Int(pidMax.dropLast()) ?? 0, 32768, pidMax)
        XCTAssertTrue(String(decoding: try FS.readFile("/proc/self/mountinfo"), as: UTF8.self).contains(" / / "))
    }
}
