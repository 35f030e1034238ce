import TestSupport
import XCTest
import Foundation
import Glibc
import SysKit
import EnvFormat
import EnvStore
import EnvFS
import EnvPublish

/// envmount check: findings from the manifest's recorded facts against a given machine.
final class PreflightTests: XCTestCase {
    /// A manifest with `bin/python` -> `python3.11` -> `target` (or a regular bin/python) and `metadata`.
    func manifest(pythonTarget: String?, metadata: [(key: String, value: String)]) throws -> Manifest {
        var b = ManifestBuilder()
        func node(_ parent: Int, _ name: String, _ kind: Manifest.Kind, size: UInt64 = 0) -> ManifestBuilder.Node {
            ManifestBuilder.Node(parent: parent, name: Array(name.utf8), kind: kind, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: size)
        }
        let root = b.add(node(0, "", .directory))
        let bin = b.add(node(root, "bin", .directory))
        if let t = pythonTarget {
            var py = node(bin, "python", .symlink, size: 10)
            py.symlinkTarget = Array("python3.11".utf8)
            b.add(py)
            var py311 = node(bin, "python3.11", .symlink, size: UInt64(t.utf8.count))
            py311.symlinkTarget = Array(t.utf8)
            b.add(py311)
        } else {
            b.add(node(bin, "python", .regular))
        }
        return try b.build(chunking: ChunkingParams.default, sourcePath: Array("/src/venv".utf8),
                           metadata: metadata.sorted { $0.key < $1.key }, chunks: [])
    }

    func levels(_ f: [Preflight.Finding]) -> [Preflight.Finding.Level] { f.map(\.level) }

    func testMissingBaseInterpreterFailsAndNamesTheFix() throws {
        let m = try manifest(pythonTarget: "/nonexistent/pyenv/versions/3.11.7/bin/python3.11",
                             metadata: [("python.home", "/nonexistent/pyenv/versions/3.11.7/bin"), ("python.version", "3.11.7")])
        let f = Preflight.interpreter(m)
        XCTAssertEqual(f.level, .failure)
        XCTAssertTrue(f.text.contains("/nonexistent/pyenv/versions/3.11.7/bin/python3.11"), f.text)
        XCTAssertTrue(f.text.contains("--with-python") && f.text.contains("Python 3.11 at"), f.text)
        XCTAssertEqual(Preflight.interpreter(try manifest(pythonTarget: "/bin/sh", metadata: [])).level, .ok, "present on this machine")
        XCTAssertEqual(Preflight.interpreter(try manifest(pythonTarget: "/nonexistent", metadata: [("python.bundled", ".envmount-python")])).level, .ok)
        XCTAssertEqual(Preflight.interpreter(try manifest(pythonTarget: nil, metadata: [])).level, .ok, "a prefix environment holds its interpreter")
        // A link back into the environment by its source path is followed inside the tree (here
        // into a loop, which ends the search with nothing to check).
        XCTAssertEqual(Preflight.interpreter(try manifest(pythonTarget: "/src/venv/bin/python", metadata: [])).level, .ok)
    }

    func testArchitectureAndGlibc() throws {
        let m = try manifest(pythonTarget: nil, metadata: [("elf.machine", "aarch64"), ("elf.glibc", "2.38")])
        let f = Preflight.run(m, machine: "x86_64", glibc: "2.36", nvidiaVersionFile: "/nonexistent")
        XCTAssertEqual(levels(f), [.ok, .failure, .failure])
        XCTAssertTrue(f[1].text.contains("aarch64") && f[1].text.contains("x86_64"), f[1].text)
        XCTAssertTrue(f[2].text.contains("2.38") && f[2].text.contains("2.36"), f[2].text)
        XCTAssertEqual(levels(Preflight.run(m, machine: "aarch64", glibc: "2.39")), [.ok, .ok, .ok])
        XCTAssertEqual(Preflight.compareVersions("2.9", "2.10"), -1)
        XCTAssertEqual(Preflight.compareVersions("535.104.05", "525.60.13"), 1)
        XCTAssertEqual(Preflight.compareVersions("2.35", "2.35.0"), 0)
    }

    func testNvidiaDriverAgainstTheCudaWheels() throws {
        let dir = try TempDir("preflight")
        defer { dir.remove() }
        let m = try manifest(pythonTarget: nil, metadata: [("cuda.version", "12.4"), ("cuda.driver.min", "525.60.13"),
                                                            ("cuda.driver.full", "550.54.14")])
        func check(_ driver: String?) throws -> Preflight.Finding {
            let file = dir.path + "/version"
            try? FS.unlink(file)
            if let d = driver {
                try Disk.write(file.pathBytes, Array("NVRM version: NVIDIA UNIX x86_64 Kernel Module  \(d)  Sat Aug 19 01:15:15 UTC 2023\nGCC version:  gcc version 12.2.0\n".utf8))
            }
            return try XCTUnwrap(Preflight.run(m, nvidiaVersionFile: file).last)
        }
        XCTAssertEqual(try check("555.42.02").level, .ok)
        XCTAssertEqual(try check("535.104.05").level, .warning)
        let old = try check("520.61.05")
        XCTAssertEqual(old.level, .failure)
        XCTAssertTrue(old.text.contains("525.60.13") && old.text.contains("520.61.05"), old.text)
        let none = try check(nil)
        XCTAssertEqual(none.level, .warning)
        XCTAssertTrue(none.text.contains("no NVIDIA driver"), none.text)
    }

    func testPublishRecordsElfAndCudaFacts() throws {
        let src = try TempDir("facts")
        defer { src.remove() }
        try FS.makeDirectories(src.path + "/lib/nvidia_cuda_runtime_cu12-12.4.127.dist-info")
        try FS.makeDirectories(src.path + "/bin")
        let elf = try FS.readFile("/bin/true")
        try Disk.write((src.path + "/bin/tool").pathBytes, elf, mode: 0o755)
        let m = try Mounted(source: src.path).manifest
        XCTAssertEqual(m.metadataValue("elf.machine"), SystemInfo.machine())
        let g = try XCTUnwrap(m.metadataValue("elf.glibc"))
        XCTAssertTrue(g.hasPrefix("2."), g)
        XCTAssertLessThanOrEqual(Preflight.compareVersions(g, SystemInfo.glibcVersion()), 0, "this machine's /bin/true runs here")
        XCTAssertEqual(m.metadataValue("cuda.version"), "12.4")
        XCTAssertEqual(m.metadataValue("cuda.driver.min"), "525.60.13")
        XCTAssertEqual(m.metadataValue("cuda.driver.full"), "550.54.14")
    }
}
