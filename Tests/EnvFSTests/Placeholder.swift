import XCTest
final class EnvFSTestsPlaceholder: XCTestCase { func testNothing() {} }
