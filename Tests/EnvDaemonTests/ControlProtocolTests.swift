@testable import EnvDaemon
import Foundation
import XCTest

final class ControlProtocolTests: XCTestCase {
    let requests: [ControlRequest] = [
        .status, .warm(paths: ["lib/python3.11/site-packages/numpy", "bin/python"], label: "numpy"), .warmAll,
        .warmProfile(name: "import-torch"), .jobs(ids: [1, 5]), .jobs(ids: []), .saveProfile(name: "p.1"),
    ]

    func testEveryRequestSurvivesTheWireAsOneLine() throws {
        for r in requests {
            let line = try ControlCoding.encodeLine(r)
            XCTAssertEqual(line.last, 0x0a)
            XCTAssertEqual(line.filter { $0 == 0x0a }.count, 1, "a request must be exactly one line: \(r)")
            XCTAssertEqual(try ControlCoding.decode(ControlRequest.self, Array(line.dropLast())), r)
        }
    }

    func testTheWireFormatNamesTheOperationAndOnlyItsPayload() throws {
        let line = String(decoding: try ControlCoding.encodeLine(ControlRequest.warm(paths: ["a"], label: "x")), as: UTF8.self)
        XCTAssertEqual(line, #"{"warm":{"label":"x","paths":["a"]}}"# + "\n")
        XCTAssertEqual(String(decoding: try ControlCoding.encodeLine(ControlRequest.status), as: UTF8.self), #"{"status":{}}"# + "\n")
    }

    func testUnknownOrMalformedRequestsDoNotDecode() {
        for bad in [#"{"op":"status"}"#, #"{"format-disk":{}}"#, #"{"warm":{"paths":"notalist","label":"x"}}"#,
                    #"{"jobs":{"ids":["one"]}}"#, "", "null", #"{"status":{},"warmAll":{}}"#] {
            XCTAssertThrowsError(try ControlCoding.decode(ControlRequest.self, Array(bad.utf8)), bad)
        }
    }

    func testRepliesRoundTrip() throws {
        let job = JobInfo(id: 3, label: "numpy", chunks: 10, doneChunks: 4, failedChunks: 1, bytes: 1000, doneBytes: 400,
                          seconds: 1.5, finished: false, error: "timeout")
        for r in [ControlReply.jobs([job], missing: 2), .profileSaved(key: "profiles/e/m/p", chunks: 7), .failed("no such profile")] {
            XCTAssertEqual(try ControlCoding.decode(ControlReply.self, Array(try ControlCoding.encodeLine(r).dropLast())), r)
        }
    }
}
