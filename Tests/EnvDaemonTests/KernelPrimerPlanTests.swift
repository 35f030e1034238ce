@testable import EnvDaemon
import EnvFormat
import XCTest

/// KernelPrimer.plan over a hand-laid manifest: which files it stores per profile chunk, and
/// which directories it lists, in what order.
final class KernelPrimerPlanTests: XCTestCase {
    static func id(_ s: String) -> ChunkID { ChunkID.of(Array(s.utf8)) }

    /// pkg/a.py X, pkg/__pycache__/a.cpython-311.pyc X, pkg/split.bin X+Y, pkg/big.so Y (1,500 B),
    /// pkg/empty (no span), other/c.pyc Z. Chunks in the table: X, Y, Z.
    func manifest() throws -> Manifest { try Self.manifest() }

    static func manifest() throws -> Manifest {
        var b = ManifestBuilder()
        func dir(_ parent: Int, _ name: String) -> Int {
            b.add(.init(parent: parent, name: Array(name.utf8), kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        }
        func file(_ parent: Int, _ name: String, _ spans: [(UInt32, UInt32, UInt32)]) {
            let size = spans.reduce(UInt64(0)) { $0 + UInt64($1.2) }
            let n = b.add(.init(parent: parent, name: Array(name.utf8), kind: .regular, mode: 0o644, uid: 0, gid: 0, mtimeNs: 0, size: size))
            for (c, off, len) in spans { b.appendSpan(n, Manifest.Span(chunk: c, offset: off, length: len)) }
        }
        _ = dir(0, "")
        let pkg = dir(0, "pkg"), cache = dir(pkg, "__pycache__"), other = dir(0, "other")
        file(pkg, "a.py", [(0, 0, 100)])
        file(cache, "a.cpython-311.pyc", [(0, 100, 200)])
        file(pkg, "split.bin", [(0, 300, 50), (1, 0, 50)])
        file(pkg, "big.so", [(1, 50, 1500)])
        file(pkg, "empty", [])
        file(other, "c.pyc", [(2, 0, 10)])
        let table = [("X", 350), ("Y", 1550), ("Z", 10)].map {
            Manifest.ChunkRecord(id: id($0.0), rawSize: UInt32($0.1), storedSize: UInt32($0.1))
        }
        return try b.build(chunking: ChunkingParams(minSize: 64, avgSize: 1024, maxSize: 4096), sourcePath: [], metadata: [], chunks: table)
    }

    func testTheExtensionSuffixIsTheOneTheTreesModulesUseMostOften() throws {
        var b = ManifestBuilder()
        _ = b.add(.init(parent: 0, name: [], kind: .directory, mode: 0o755, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        for n in ["a.cpython-311-x86_64-linux-gnu.so", "b.cpython-311-x86_64-linux-gnu.so", "c.cpython-310-x86_64-linux-gnu.so",
                  "d.abi3.so", "libfoo.so", "e.cpython-311-x86_64-linux-gnu.so.txt"] {
            _ = b.add(.init(parent: 0, name: Array(n.utf8), kind: .regular, mode: 0o644, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        }
        let m = try b.build(chunking: ChunkingParams(minSize: 64, avgSize: 1024, maxSize: 4096), sourcePath: [], metadata: [], chunks: [])
        XCTAssertEqual(KernelPrimer.extensionSuffix(m), ".cpython-311-x86_64-linux-gnu.so")
        XCTAssertEqual(KernelPrimer.plan(m, profile: []).packageProbes.map { String(decoding: $0, as: UTF8.self) },
                       ["__init__.cpython-311-x86_64-linux-gnu.so", "__init__.abi3.so", "__init__.so"])
    }

    func testStoresSmallWholeNonSourceFilesPerChunkAndListsTheirDirectoriesAncestorsFirst() throws {
        let m = try manifest()
        func at(_ p: String) throws -> Int { try XCTUnwrap(m.resolve(Array(p.utf8)), p) }
        // Profile order: Y first, then X; Z is not in the profile.
        let plan = KernelPrimer.plan(m, profile: [1, 0], maxFileSize: 1000)
        XCTAssertEqual(plan.files.count, 2)
        XCTAssertEqual(plan.files[0], [], "big.so is over the limit; split.bin starts in X")
        XCTAssertEqual(plan.files[1], [try at("pkg/__pycache__/a.cpython-311.pyc")],
                       "a.py is source, split.bin spans two chunks, empty has no bytes")
        XCTAssertEqual(plan.directories, [0, try at("pkg"), try at("pkg/__pycache__")],
                       "big.so (Y, first) brings pkg after the root; a.pyc then its __pycache__; other/ holds nothing of the profile")
        // With a limit above big.so it is stored with Y's files; a skipped entry is left out.
        let bigger = KernelPrimer.plan(m, profile: [1, 0], maxFileSize: 2000)
        XCTAssertEqual(bigger.files[0], [try at("pkg/big.so")])
        let skipping = KernelPrimer.plan(m, profile: [1, 0], maxFileSize: 2000) { $0 == (try? at("pkg/big.so")) }
        XCTAssertEqual(skipping.files[0], [])
        XCTAssertEqual(skipping.directories, plan.directories, "a skipped file still has its directory listed")
        XCTAssertEqual(plan.packageProbes.map { String(decoding: $0, as: UTF8.self) }, ["__init__.abi3.so", "__init__.so"],
                       "no CPython extension module in the tree: only the generic suffixes")
        // A profile naming a chunk twice keeps its first position.
        XCTAssertEqual(KernelPrimer.plan(m, profile: [0, 1, 0], maxFileSize: 1000).files.map(\.count), [1, 0, 0])
    }
}
