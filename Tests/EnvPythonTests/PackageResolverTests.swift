import EnvPython
import Foundation
import SysKit
import XCTest

/// The resolver over generated site-packages trees shaped like real wheels (numpy with CRLF
/// RECORD lines and bytecode written after install, the nvidia namespace packages).
final class PackageResolverTests: XCTestCase {
    var root = ""
    let site = "lib/python3.11/site-packages"

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "envpython-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FS.makeDirectories(root + "/" + site)
        try write("pyvenv.cfg", "home = /usr/bin\nversion_info = 3.11.7.final.0\n")
    }

    override func tearDown() { try? FS.removeTree(root) }

    func write(_ rel: String, _ text: String = "x") throws {
        let path = root + "/" + rel
        try FS.makeDirectories(String(path[..<path.lastIndex(of: "/")!]))
        try FS.writeFileAtomically(path, Array(text.utf8), sync: false)
    }

    /// Installs a distribution: its files, a RECORD listing them (lines ending `eol`), METADATA.
    func install(_ name: String, _ version: String, files: [String], notInRecord: [String] = [], requires: [String] = [], eol: String = "\n") throws {
        let di = "\(name)-\(version).dist-info"
        for f in files + notInRecord { try write(f.hasPrefix("../") ? PackageResolver.clean(site + "/" + f)! : site + "/" + f) }
        var meta = "Metadata-Version: 2.1\nName: \(name)\nVersion: \(version)\n"
        for r in requires { meta += "Requires-Dist: \(r)\n" }
        meta += "\nRequires-Dist: not-a-header (this is the description)\n"
        try write("\(site)/\(di)/METADATA", meta)
        let record = (files + ["\(di)/METADATA", "\(di)/RECORD"]).map { "\($0),sha256=abc,1" }.joined(separator: eol) + eol
        try write("\(site)/\(di)/RECORD", record)
    }

    func dist(_ r: PackageResolver, _ name: String) throws -> PackageResolver.Distribution {
        try XCTUnwrap(r.distributions().first { $0.normalized == PackageResolver.normalize(name) }, name)
    }

    func testNumpyLikeWheelWithCRLFRecordWarmsItsWholeDirectoriesAndScripts() throws {
        try install("numpy", "2.4.6", files: ["numpy/__init__.py", "numpy/_core/multiarray.py", "numpy/_core/_multiarray_umath.so",
                                              "numpy.libs/libopenblas-1234.so", "../../../bin/f2py"],
                    notInRecord: ["numpy/__pycache__/__init__.cpython-311.pyc", "numpy/_core/__pycache__/multiarray.cpython-311.pyc"],
                    eol: "\r\n")
        try install("pip", "24.0", files: ["pip/__init__.py"])
        let r = PackageResolver(root: root)
        let plan = r.plan(for: try dist(r, "NumPy"))
        XCTAssertEqual(plan.recordFiles, 7)
        XCTAssertEqual(plan.outsideFiles, 1)
        XCTAssertEqual(plan.wholeDirectories, ["\(site)/numpy", "\(site)/numpy.libs"])
        XCTAssertEqual(Set(plan.paths), ["bin/f2py", "\(site)/numpy", "\(site)/numpy.libs", "\(site)/numpy-2.4.6.dist-info"])
    }

    func testANamespaceSharedByNvidiaWheelsIsSplitByOwner() throws {
        try install("nvidia_cublas_cu12", "12.4.5.8", files: ["nvidia/__init__.py", "nvidia/cublas/__init__.py", "nvidia/cublas/lib/libcublas.so.12",
                                                             "nvidia/cublas/include/cublas.h"],
                    notInRecord: ["nvidia/__pycache__/__init__.cpython-311.pyc", "nvidia/cublas/__pycache__/__init__.cpython-311.pyc"])
        try install("nvidia_cudnn_cu12", "9.1.0.70", files: ["nvidia/__init__.py", "nvidia/cudnn/__init__.py", "nvidia/cudnn/lib/libcudnn.so.9"])
        // CUDA 13 wheels share one lib/ directory.
        try install("nvidia_cuda_runtime", "13.0.96", files: ["nvidia/cu13/lib/libcudart.so.13"])
        try install("nvidia_nvjitlink", "13.0.88", files: ["nvidia/cu13/lib/libnvJitLink.so.13", "nvidia/cu13/include/nvJitLink.h"])
        let r = PackageResolver(root: root)

        let cublas = r.plan(for: try dist(r, "nvidia-cublas-cu12"))
        XCTAssertEqual(cublas.wholeDirectories, ["\(site)/nvidia/cublas"])
        XCTAssertTrue(cublas.paths.contains("\(site)/nvidia/__init__.py"))
        XCTAssertTrue(cublas.paths.contains("\(site)/nvidia/__pycache__/__init__.cpython-311.pyc"))
        XCTAssertFalse(cublas.paths.contains("\(site)/nvidia"), "the shared namespace must not be warmed whole")
        XCTAssertFalse(cublas.paths.contains { $0.contains("cudnn") || $0.contains("cu13") }, "\(cublas.paths)")

        let jit = r.plan(for: try dist(r, "nvidia-nvjitlink"))
        XCTAssertEqual(jit.wholeDirectories, ["\(site)/nvidia/cu13/include"])
        XCTAssertTrue(jit.paths.contains("\(site)/nvidia/cu13/lib/libnvJitLink.so.13"))
        XCTAssertFalse(jit.paths.contains { $0.contains("cudart") || $0.hasSuffix("/cu13/lib") || $0.hasSuffix("/cu13") }, "\(jit.paths)")
    }

    func testATopLevelModuleGetsItsOwnBytecodeOnly() throws {
        try install("six", "1.16.0", files: ["six.py"], notInRecord: ["__pycache__/six.cpython-311.pyc", "__pycache__/other.cpython-311.pyc"])
        let r = PackageResolver(root: root)
        let plan = r.plan(for: try dist(r, "six"))
        XCTAssertEqual(Set(plan.paths), ["\(site)/six.py", "\(site)/__pycache__/six.cpython-311.pyc", "\(site)/six-1.16.0.dist-info"])
        XCTAssertEqual(plan.wholeDirectories, [])
    }

    func testAFileAnotherPackageAddedMakesADirectoryShared() throws {
        try install("base", "1.0", files: ["plug/__init__.py", "plug/core.py"])
        try install("base-extra", "1.0", files: ["plug/extra.py"])
        let r = PackageResolver(root: root)
        let plan = r.plan(for: try dist(r, "base"))
        XCTAssertEqual(plan.wholeDirectories, [])
        XCTAssertFalse(plan.paths.contains("\(site)/plug/extra.py"))
        XCTAssertTrue(plan.paths.contains("\(site)/plug/core.py"))
    }

    func testRequiresDistIsFollowedRecursivelyWhereMarkersApply() throws {
        try install("app", "1.0", files: ["app/__init__.py"],
                    requires: ["lib-a>=1.0", "Lib_B[fast] (>=2) ; python_version >= \"3.8\"", "old-backport ; python_version < '3.8'",
                               "test-only ; extra == 'test'", "win-only; sys_platform == \"win32\"", "absent-pkg", "plat; platform_system == 'Linux' and (os_name == 'posix' or os_name == 'nt')"])
        try install("lib_a", "1.0", files: ["lib_a.py"], requires: ["lib-c"])
        try install("lib_b", "2.0", files: ["lib_b.py"])
        try install("lib_c", "1.0", files: ["lib_c.py"], requires: ["app"])   // a cycle
        try install("old_backport", "1.0", files: ["old_backport.py"])
        try install("test_only", "1.0", files: ["test_only.py"])
        try install("win_only", "1.0", files: ["win_only.py"])
        try install("plat", "1.0", files: ["plat.py"])
        let r = PackageResolver(root: root)
        XCTAssertEqual(r.pythonVersion(), "3.11.7")
        let all = r.distributions()
        let env = MarkerEnvironment(pythonVersion: r.pythonVersion()!)
        let (dists, missing) = r.withDependencies([try dist(r, "app")], in: env, installed: all)
        XCTAssertEqual(dists.map(\.normalized), ["app", "lib-a", "lib-b", "plat", "lib-c"])
        XCTAssertEqual(missing, ["absent-pkg"])
        XCTAssertEqual(r.requirements(of: try dist(r, "app")).count, 7, "the description's lines are not headers")
    }
}
