@testable import EnvDaemon
import EnvStore
import Foundation
import SysKit
import TestSupport
import XCTest

final class MountOptionsTests: XCTestCase {
    /// Every field set away from its default, so a field the coding dropped would show.
    func everythingSet() -> MountOptions {
        var o = MountOptions(store: "s3://bucket/prefix", mountpoint: "/mnt/x")
        o.env = "torch"
        o.cacheDir = "/var/tmp/c"
        o.cacheSize = 20 << 30
        o.logFile = "/var/log/e.log"
        o.storeOptions.endpoint = "http://127.0.0.1:9000"
        o.storeOptions.region = "auto"
        o.storeOptions.mirrors = ["http://a", "http://b"]
        o.storeOptions.requestDeadline = 7.5
        o.readAheadKB = 512
        o.kernelCacheTimeout = 5
        o.keepCache = false
        o.splice = false
        o.zeroMessageOpen = false
        o.primeKernel = false
        o.fetchThreads = 3
        o.readAheadChunks = 0
        o.streamReadAhead = 9
        o.prefetch = "import-torch"
        o.fuseDebug = true
        o.relocate = false
        o.trust.keys = ["/keys/a.pub", "/keys/b.pub"]
        o.trust.configDir = "/etc/envmount-test"
        o.trust.stateDir = "/var/tmp/state"
        o.trust.maxAge = 3600
        o.trust.allowOlder = true
        return o
    }

    func testOptionsReachTheDaemonUnchanged() throws {
        let o = everythingSet()
        XCTAssertNotEqual(o, MountOptions(store: o.store, mountpoint: o.mountpoint))
        let h = DaemonHandoff(options: o, manifest: String(repeating: "ab", count: 32), offline: true)
        let back = try JSONDecoder().decode(DaemonHandoff.self, from: try JSONEncoder().encode(h))
        XCTAssertEqual(back, h)
        XCTAssertEqual(back.options.storeOptions.mirrors, ["http://a", "http://b"])
        XCTAssertEqual(back.options.trust, o.trust)
    }

    func testTimeoutMustBeFinitePositiveAndBounded() {
        for bad in [Double.nan, .infinity, -.infinity, 1e300, 86401, 0, -1, -0.0] {
            var o = MountOptions(store: "/s", mountpoint: "/m")
            o.storeOptions.requestDeadline = bad
            XCTAssertThrowsError(try o.validate(), "timeout \(bad) was accepted") { e in
                XCTAssertTrue("\(e)".contains("--timeout"), "\(e)")
            }
        }
        for good in [0.001, 1, 60, 86400] {
            var o = MountOptions(store: "/s", mountpoint: "/m")
            o.storeOptions.requestDeadline = good
            XCTAssertNoThrow(try o.validate(), "timeout \(good) refused")
        }
    }

    func testOtherValuesAreValidated() {
        func refused(_ change: (inout MountOptions) -> Void, _ flag: String) {
            var o = MountOptions(store: "/s", mountpoint: "/m")
            change(&o)
            XCTAssertThrowsError(try o.validate()) { XCTAssertTrue("\($0)".contains(flag), "\($0)") }
        }
        refused({ $0.cacheSize = 0 }, "--cache-size")
        refused({ $0.fetchThreads = 0 }, "--fetch-threads")
        refused({ $0.readAheadChunks = -1 }, "--read-ahead-chunks")
        refused({ $0.streamReadAhead = 1000 }, "--stream-read-ahead")
        refused({ $0.readAheadKB = 1 }, "--read-ahead-kb")
        refused({ $0.kernelCacheTimeout = .nan }, "--kernel-cache-timeout")
        refused({ $0.env = "../etc" }, "environment name")
        refused({ $0.prefetch = "a/b" }, "profile name")
        refused({ $0.trust.maxAge = 0 }, "--max-age")
        XCTAssertNoThrow(try everythingSet().validate())
    }

    func testAllowOtherOnlyWhereFusermountPermitsIt() throws {
        let dir = try TempDir("fuseconf")
        defer { dir.remove() }
        let conf = dir.path + "/fuse.conf"
        let o = MountOptions(store: "/s", mountpoint: "/m")
        try writeFile(conf, Array("# user_allow_other\n#user_allow_other\nmount_max = 10\n".utf8))
        XCTAssertFalse(MountDaemon.fuseOptions(o, env: "e", uid: 1000, fuseConf: conf).contains("allow_other"))
        XCTAssertTrue(MountDaemon.fuseOptions(o, env: "e", uid: 0, fuseConf: conf).contains("allow_other"))
        XCTAssertFalse(MountDaemon.fuseOptions(o, env: "e", uid: 1000, fuseConf: dir.path + "/missing").contains("allow_other"))
        try writeFile(conf, Array("mount_max = 10\n  user_allow_other \n".utf8))
        XCTAssertTrue(MountDaemon.fuseOptions(o, env: "e", uid: 1000, fuseConf: conf).contains("allow_other"))
        XCTAssertEqual(Array(MountDaemon.fuseOptions(o, env: "e", uid: 0, fuseConf: conf).prefix(2)), ["ro", "default_permissions"])
        XCTAssertTrue(MountDaemon.fuseOptions(o, env: "e", uid: 1000, fuseConf: conf).contains("auto_unmount"))
        XCTAssertFalse(MountDaemon.fuseOptions(o, env: "e", uid: 0, fuseConf: conf).contains("auto_unmount"))
    }

    /// The stream read-ahead window follows the store's latency, not its type: a remote store
    /// (even a memory store declared remote) gets 32 chunks, a local one none; the option wins.
    func testStreamWindowFollowsStoreLatency() throws {
        var o = MountOptions(store: "/srv/envs", mountpoint: "/mnt/x")
        let dir = Servers.makeTempDir("window")
        defer { try? FS.removeTree(dir) }
        let stores: [(any ObjectStore, Int)] = [
            (MemoryStore(), 0),
            (MemoryStore(latency: .remote), 32),
            (try StoreFactory.open(dir), 0),
            (try StoreFactory.open("http://127.0.0.1:9/envs"), 32),
        ]
        for (store, window) in stores {
            XCTAssertEqual(o.streamWindow(for: store.traits), window, "\(store.description) (\(store.traits))")
        }
        o.streamReadAhead = 5
        XCTAssertEqual(o.streamWindow(for: MemoryStore().traits), 5)
        XCTAssertEqual(o.streamWindow(for: MemoryStore(latency: .remote).traits), 5)
        o.streamReadAhead = 0
        XCTAssertEqual(o.streamWindow(for: MemoryStore(latency: .remote).traits), 0)
    }
}
