import SysKit
import XCTest

/// Zstd.decompress fills a buffer it did not zero first: it must return exactly the frame's
/// bytes, and refuse a frame of another size than expected without handing out the buffer.
final class ZstdTests: XCTestCase {
    func testAFrameDecodesToExactlyItsBytes() throws {
        var seed: UInt64 = 7
        let raw = (0..<300_000).map { _ -> UInt8 in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: seed >> 59)   // compressible, not constant
        }
        let frame = try Zstd.compress(raw, level: 3)
        XCTAssertLessThan(frame.count, raw.count)
        XCTAssertEqual(try Zstd.decompress(frame, expectedSize: raw.count), raw)
        XCTAssertEqual(try Zstd.decompress(frame, limit: raw.count), raw)
        XCTAssertEqual(try Zstd.decompress(try Zstd.compress([], level: 3), expectedSize: 0), [])
    }

    func testAFrameOfAnotherSizeIsRefused() throws {
        let raw = [UInt8](repeating: 42, count: 100_000)
        let frame = try Zstd.compress(raw, level: 3)
        XCTAssertThrowsError(try Zstd.decompress(frame, expectedSize: raw.count + 1)) {
            XCTAssertTrue("\($0)".contains("expected 100001"), "\($0)")
        }
        XCTAssertThrowsError(try Zstd.decompress(frame, expectedSize: raw.count - 1), "the buffer is too small")
        XCTAssertThrowsError(try Zstd.decompress(Array(frame.dropLast(3)), expectedSize: raw.count), "a truncated frame")
        XCTAssertThrowsError(try Zstd.decompress([], expectedSize: 0))
    }
}
