import XCTest
import SysKit
import EnvFormat
import EnvPublish

/// The pieces of a writable mount's publish that need no mount: the mount table as envpublish
/// reads it, the layer record, and the package list taken from a base revision's record.
final class LayerPublishUnitTests: XCTestCase {
    func testMountTableReadsOverlayOptionsAndEscapedPaths() {
        let text = """
            22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
            97 22 0:52 / /tmp/with\\040space rw,nosuid,nodev,relatime shared:60 - fuse.envmount envmount-lower:py ro,user_id=0,group_id=0,allow_other
            98 22 0:53 / /opt/venv rw,relatime - overlay envmount:py rw,lowerdir=/l/lower,upperdir=/l/upper,workdir=/l/work,redirect_dir=off
            bad line
            """
        let e = MountTable.parse(text)
        XCTAssertEqual(e.map(\.mountpoint), ["/", "/tmp/with space", "/opt/venv"])
        XCTAssertEqual(e[1].fsType, "fuse.envmount")
        XCTAssertEqual(e[1].source, "envmount-lower:py")
        XCTAssertEqual(e[2].superOption("upperdir"), "/l/upper")
        XCTAssertEqual(e[2].superOption("lowerdir"), "/l/lower")
        XCTAssertNil(e[2].superOption("metacopy"))
        XCTAssertNil(e[0].superOption("upperdir"))
    }

    func testLayerRecordRoundTripsAndRefusesOtherFiles() throws {
        let r = LayerRecord(store: "/srv/envs", env: "py", manifest: ChunkID.of(Array("m".utf8)), revision: 7)
        XCTAssertEqual(LayerRecord.decode(r.encode()), r)
        XCTAssertNil(LayerRecord.decode(Array("precious data\n".utf8)))
        XCTAssertNil(LayerRecord.decode(Array("envmount-layer 1\nstore /s\nenv py\n".utf8)), "no manifest")
    }

    func testUntouchedDistInfoDirectoriesComeFromTheBaseRecordUnread() throws {
        let root = "/tmp/envmount-layer-unit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FS.removeTree(root) }
        let site = root + "/lib/python3.11/site-packages"
        func dist(_ dir: String, metadata: String?) throws {
            try FS.makeDirectories(site + "/" + dir)
            if let m = metadata { try FS.writeFileAtomically(site + "/\(dir)/METADATA", Array(m.utf8)) }
        }
        // No METADATA at all: only the base record can name it, so a name here proves no read.
        try dist("PyYAML-6.0.1.dist-info", metadata: nil)
        // Touched by the layer: read, whatever the base says.
        try dist("six-1.17.0.dist-info", metadata: "Name: six\nVersion: 1.17.0\n")
        // Untouched, but the base knows no such version: read.
        try dist("idna-3.7.dist-info", metadata: "Name: idna\nVersion: 3.7\n")
        var yaml = Distribution(name: "PyYAML", version: "6.0.1")
        yaml.requirement = "PyYAML @ file:///w/PyYAML-6.0.1.whl"
        let base = [yaml, Distribution(name: "six", version: "1.16.0"), Distribution(name: "idna", version: "3.6")]
        let known = KnownDistributions(packages: base, untouched: { !$0.contains("/six-") })
        let found = PackageScanner.scan(root: root, known: known)
        XCTAssertEqual(found.map(\.name), ["idna", "PyYAML", "six"])
        XCTAssertEqual(found.first { $0.name == "PyYAML" }?.requirement, "PyYAML @ file:///w/PyYAML-6.0.1.whl")
        XCTAssertEqual(found.first { $0.name == "six" }?.version, "1.17.0")
        XCTAssertEqual(found.first { $0.name == "idna" }?.version, "3.7")
        // Without a base, the METADATA-less directory is no distribution.
        XCTAssertEqual(PackageScanner.scan(root: root).map(\.name), ["idna", "six"])
    }
}
