// swift-tools-version:6.0
// envmount: publish a Python venv as content-addressed chunks and mount it lazily with FUSE.
import PackageDescription

let package = Package(
    name: "envmount",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "envmount", targets: ["envmount"]),
        .executable(name: "envpublish", targets: ["envpublish"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C-facing layer: system libraries, the chunking kernel, and the Swift wrappers that are
        // the only places allowed to touch unsafe pointers.
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        // Not linked: libcurl is loaded on first use (Sources/CCurl/include/ccurl.h says why).
        .target(name: "CCurl"),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "SysKit", dependencies: ["CZstd", "CCrypto", "CKernels"]),
        .target(name: "CurlKit", dependencies: ["CCurl", "SysKit"]),
        .target(name: "FuseKit", dependencies: ["CFuse", "SysKit"]),

        // Pure Swift layers.
        .target(name: "EnvFormat", dependencies: ["SysKit"]),
        .target(name: "EnvStore", dependencies: ["EnvFormat", "SysKit", "CurlKit"]),
        .target(name: "EnvCache", dependencies: ["EnvFormat", "SysKit"]),
        // Getting chunk bytes: the verified single-flight fetcher, the fetch pool, read-ahead and
        // access recording, used by the filesystem, warm and the materialized trees.
        .target(name: "EnvFetch", dependencies: ["EnvFormat", "EnvStore", "EnvCache", "SysKit"]),
        .target(name: "EnvFS", dependencies: ["EnvFetch", "EnvFormat", "EnvStore", "EnvCache", "SysKit"]),
        .target(name: "EnvPublish", dependencies: ["EnvFormat", "EnvStore", "SysKit"]),
        // What a Python environment holds: distributions, their files, requirements and markers.
        .target(name: "EnvPython", dependencies: ["SysKit"]),

        // The mount daemon: options, lifecycle (re-exec, READY), control socket, FUSE bridge.
        .target(name: "EnvDaemon", dependencies: ["EnvFS", "EnvFetch", "FuseKit", "EnvStore", "EnvCache", "EnvFormat", "SysKit"]),

        .executableTarget(name: "envmount", dependencies: [
            "EnvDaemon", "EnvFS", "EnvStore", "EnvCache", "EnvFormat", "EnvPython", "SysKit", "EnvPublish",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "envpublish", dependencies: [
            "EnvPublish", "EnvStore", "EnvFormat", "EnvPython", "SysKit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Benchmarks that need the project's modules (Tools/bench/*.sh run them).
        .executableTarget(name: "envmount-checkbench", dependencies: ["EnvFS", "EnvFormat", "SysKit"], path: "Tools/bench/CheckBench"),

        .testTarget(name: "EnvFormatTests", dependencies: ["EnvFormat", "SysKit", "TestSupport"]),
        // Test helpers: seeded random bytes, and nginx, moto and the fault proxy from Tools/.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "EnvStoreTests", dependencies: ["EnvStore", "EnvFormat", "SysKit", "TestSupport"]),
        .testTarget(name: "EnvCacheTests", dependencies: ["EnvCache", "EnvFormat", "SysKit"]),
        .testTarget(name: "EnvFetchTests", dependencies: ["EnvFetch", "EnvPublish", "EnvStore", "EnvCache", "EnvFormat", "SysKit", "TestSupport"]),
        .testTarget(name: "EnvFSTests", dependencies: ["EnvFS", "EnvFetch", "EnvPublish", "EnvStore", "EnvCache", "EnvFormat", "SysKit", "TestSupport"]),
        .testTarget(name: "EnvDaemonTests", dependencies: ["EnvDaemon", "EnvFS", "EnvFetch", "EnvPublish", "EnvStore", "EnvCache", "EnvFormat", "FuseKit", "SysKit", "TestSupport"]),
        .testTarget(name: "EnvPythonTests", dependencies: ["EnvPython", "SysKit"]),
        .testTarget(name: "IntegrationTests", dependencies: ["EnvFormat", "EnvStore", "SysKit", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
