@testable import EnvDaemon
import EnvFormat
import XCTest

/// NativeReadAhead.plan over KernelPrimerPlanTests' hand-laid manifest: which bytes of which
/// files a native mount reads ahead for a profile, in what order.
final class NativeReadAheadPlanTests: XCTestCase {
    typealias R = NativeReadAhead.Range

    func testRangesFollowTheProfilesChunksAndJoinWhereAFileContinues() throws {
        let m = try KernelPrimerPlanTests.manifest()
        func at(_ p: String) throws -> Int { try XCTUnwrap(m.resolve(Array(p.utf8)), p) }
        let a = try at("pkg/a.py"), pyc = try at("pkg/__pycache__/a.cpython-311.pyc")
        let split = try at("pkg/split.bin"), big = try at("pkg/big.so")

        // Y first: split.bin's second half (its bytes 50..<100) and big.so, in chunk order; then X:
        // a.py, a.pyc and split.bin's first half, which does not continue the earlier range.
        XCTAssertEqual(NativeReadAhead.plan(m, profile: [1, 0], present: { _ in true }, limit: .max),
                       [R(entry: split, offset: 50, length: 50), R(entry: big, offset: 0, length: 1500),
                        R(entry: a, offset: 0, length: 100), R(entry: pyc, offset: 0, length: 200),
                        R(entry: split, offset: 0, length: 50)])
        // X then Y: split.bin's halves meet and are one range, where the file was first read.
        // Z (other/c.pyc) is not in the profile, and the empty file has no bytes.
        XCTAssertEqual(NativeReadAhead.plan(m, profile: [0, 1], present: { _ in true }, limit: .max),
                       [R(entry: a, offset: 0, length: 100), R(entry: pyc, offset: 0, length: 200),
                        R(entry: split, offset: 0, length: 100), R(entry: big, offset: 0, length: 1500)])
    }

    func testOnlyFilesThePartialTreeHoldsAndNoMoreThanTheLimit() throws {
        let m = try KernelPrimerPlanTests.manifest()
        func at(_ p: String) throws -> Int { try XCTUnwrap(m.resolve(Array(p.utf8)), p) }
        let a = try at("pkg/a.py"), pyc = try at("pkg/__pycache__/a.cpython-311.pyc"), big = try at("pkg/big.so")
        XCTAssertEqual(NativeReadAhead.plan(m, profile: [0, 1], present: { $0 == big || $0 == a }, limit: .max),
                       [R(entry: a, offset: 0, length: 100), R(entry: big, offset: 0, length: 1500)])
        XCTAssertEqual(NativeReadAhead.plan(m, profile: [0, 1], present: { _ in true }, limit: 120),
                       [R(entry: a, offset: 0, length: 100), R(entry: pyc, offset: 0, length: 20)],
                       "the limit cuts the last range short and stops there")
        XCTAssertEqual(NativeReadAhead.plan(m, profile: [], present: { _ in true }, limit: .max), [])
        XCTAssertEqual(NativeReadAhead.plan(m, profile: [7], present: { _ in true }, limit: .max), [],
                       "a chunk index past the table is ignored")
    }

    func testSourcesWithTheirBytecodeBesideThemAreLeftOut() throws {
        var b = ManifestBuilder()
        func add(_ parent: Int, _ name: String, _ kind: Manifest.Kind) -> Int {
            b.add(.init(parent: parent, name: Array(name.utf8), kind: kind, mode: 0o644, uid: 0, gid: 0, mtimeNs: 0, size: 0))
        }
        _ = add(0, "", .directory)
        let pkg = add(0, "pkg", .directory), other = add(0, "other", .directory)
        let cache = add(pkg, "__pycache__", .directory), notCache = add(other, "cache", .directory)
        _ = add(pkg, "a.py", .regular)
        _ = add(pkg, "b.py", .regular)                       // no bytecode
        _ = add(cache, "a.cpython-311.pyc", .regular)
        _ = add(other, "c.py", .regular)                     // its .pyc is not in a __pycache__
        _ = add(notCache, "c.cpython-311.pyc", .regular)
        let m = try b.build(chunking: ChunkingParams(minSize: 64, avgSize: 1024, maxSize: 4096), sourcePath: [], metadata: [], chunks: [])
        // (The builder orders entries its own way: find them by path.)
        XCTAssertEqual(NativeReadAhead.sourcesWithBytecode(m), [try XCTUnwrap(m.resolve(Array("pkg/a.py".utf8)))])
    }
}
