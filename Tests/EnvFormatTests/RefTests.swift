import TestSupport
import XCTest
import EnvFormat

final class RefTests: XCTestCase {
    let id = ChunkID.of(Array("manifest".utf8))

    func testRoundTrip() throws {
        for (rev, at) in [(UInt64(1), Int64(1_700_000_000)), (0, 0), (.max, .max), (42, -1), (7, .min)] {
            let r = Ref(manifest: id, revision: rev, publishedAt: at)
            XCTAssertEqual(try Ref.decode(r.encode()), r)
        }
        XCTAssertEqual(String(decoding: Ref(manifest: id, revision: 3, publishedAt: 5).encode(), as: UTF8.self),
                       "envmount-ref 1\nmanifest \(id.hex)\nrevision 3\npublished 5\n")
        XCTAssertEqual(Ref.objectKey(env: "ml"), "refs/ml")
        XCTAssertEqual(Ref.manifestKey(id), "manifests/\(id.hex)")
        XCTAssertEqual(id.objectKey, "chunks/\(id.hex.prefix(2))/\(id.hex)")
        XCTAssertEqual(ChunkID(hex: id.hex), id)
        XCTAssertEqual(ChunkID(bytes: id.bytes), id)
    }

    func testUnknownLinesAreIgnored() throws {
        let text = "envmount-ref 1\nnote hello world\nmanifest \(id.hex)\n\nrevision 9\n"
        XCTAssertEqual(try Ref.decode(Array(text.utf8)), Ref(manifest: id, revision: 9, publishedAt: 0))
    }

    func testGarbageIsRefused() {
        let hex = id.hex
        let cases: [String] = [
            "",
            "envmount-ref 2\nmanifest \(hex)\nrevision 1\n",
            "envmount-ref\nmanifest \(hex)\nrevision 1\n",
            "manifest \(hex)\nrevision 1\n",
            "envmount-ref 1\nrevision 1\n",
            "envmount-ref 1\nmanifest \(hex)\n",
            "envmount-ref 1\nmanifest \(hex.uppercased())\nrevision 1\n",
            "envmount-ref 1\nmanifest \(hex.dropLast())\nrevision 1\n",
            "envmount-ref 1\nmanifest \(hex)0\nrevision 1\n",
            "envmount-ref 1\nmanifest \(hex.dropLast())g\nrevision 1\n",
            "envmount-ref 1\nmanifest \(hex)\nrevision -1\n",
            "envmount-ref 1\nmanifest \(hex)\nrevision 18446744073709551616\n",
            "envmount-ref 1\nmanifest \(hex)\nrevision one\n",
            "envmount-ref 1\nmanifest  \(hex)\nrevision 1\n",
            "envmount-ref 1\nmanifest \(hex)\nrevision 1\n" + String(repeating: "x", count: 4096),
        ]
        for c in cases {
            XCTAssertThrowsError(try Ref.decode(Array(c.utf8)), c.prefix(80).debugDescription) { XCTAssertTrue($0 is FormatError) }
        }
        var rng = SeededRandom(seed: 3)
        for n in [1, 10, 100, 1000, 5000] {
            let junk = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            XCTAssertThrowsError(try Ref.decode(junk))
        }
    }

    func testEnvNames() {
        for ok in ["a", "ml", "torch-2.3_cu121", "A.b", "0", "x.", "a-", String(repeating: "z", count: 128)] {
            XCTAssertTrue(Ref.isValidEnvName(ok), ok)
        }
        for bad in ["", ".", "..", ".hidden", "-rf", "a/b", "../x", "a b", "é", "a\0b", "a\n", "a:b", "~",
                    String(repeating: "z", count: 129)] {
            XCTAssertFalse(Ref.isValidEnvName(bad), bad.debugDescription)
        }
    }
}
