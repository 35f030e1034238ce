import XCTest
final class EnvCacheTestsPlaceholder: XCTestCase { func testNothing() {} }
