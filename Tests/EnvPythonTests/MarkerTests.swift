import EnvPython
import XCTest

final class MarkerTests: XCTestCase {
    let env = MarkerEnvironment(pythonVersion: "3.11.7", machine: "x86_64")

    func testMarkersAsRealWheelsWriteThem() throws {
        let cases: [(String, Bool)] = [
            ("python_version >= \"3.8\"", true),
            ("python_version < '3.8'", false),
            ("python_version >= \"3.10\"", true),             // a version, not a string: "3.11" > "3.10" and < "3.9" as text
            ("python_version < \"3.9\"", false),
            ("python_full_version >= '3.11.5'", true),
            ("python_full_version < '3.11.10'", true),
            ("python_version == '3.11.*'", true),
            ("python_version != '3.11'", false),
            ("python_version ~= '3.9'", true),
            ("python_full_version ~= '3.11.0'", true),
            ("python_full_version ~= '3.10.0'", false),
            ("extra == 'test'", false),
            ("extra == \"socks\" and python_version >= '3'", false),
            ("python_version >= '3' or extra == 'dev'", true),
            ("sys_platform == 'win32'", false),
            ("sys_platform != \"win32\"", true),
            ("platform_system == \"Linux\" and platform_machine == \"x86_64\"", true),
            ("platform_machine == 'aarch64'", false),
            ("platform_machine in 'x86_64 AMD64'", true),
            ("platform_machine not in 'arm64 aarch64'", true),
            ("(os_name == 'nt' or os_name == 'posix') and implementation_name == 'cpython'", true),
            ("platform_python_implementation != 'PyPy'", true),
            ("'linux' in sys_platform", true),
        ]
        for (m, want) in cases {
            XCTAssertEqual(try Marker.evaluate(m, env), want, m)
        }
    }

    func testBadMarkersAreErrorsAndARequirementBehindOneStillApplies() {
        for m in ["python_version >=", "(python_version > '3'", "nonsense_var == '1'", "python_version >= '3' xor", "'unterminated"] {
            XCTAssertThrowsError(try Marker.evaluate(m, env), m)
        }
        XCTAssertTrue(Requirement.parse("pkg ; nonsense_var == '1'")!.applies(in: env))
    }

    func testRequirementNames() {
        XCTAssertEqual(Requirement.parse("typing-extensions>=4.10.0")?.normalized, "typing-extensions")
        XCTAssertEqual(Requirement.parse("Jinja2 (>=3.0)")?.name, "Jinja2")
        XCTAssertEqual(Requirement.parse("nvidia-cublas-cu12==12.4.5.8; platform_system == \"Linux\" and platform_machine == \"x86_64\"")?.marker,
                       "platform_system == \"Linux\" and platform_machine == \"x86_64\"")
        XCTAssertEqual(Requirement.parse("zope.interface[test]")?.normalized, "zope-interface")
        XCTAssertEqual(Requirement.parse("pkg @ https://example.com/pkg.whl ; python_version > '3'")?.name, "pkg")
        XCTAssertNil(Requirement.parse(" ; python_version > '3'"))
    }
}
