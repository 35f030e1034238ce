import XCTest
final class EnvStoreTestsPlaceholder: XCTestCase { func testNothing() {} }
