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
}
