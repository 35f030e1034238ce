import XCTest
final class EnvFormatTestsPlaceholder: XCTestCase { func testNothing() {} }
