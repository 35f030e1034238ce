import EnvFormat
import Glibc
import SysKit

/// A read-only overlay in front of a plain root FUSE mount.
///
/// Python calls `isatty` on every file it opens; on a FUSE file that is an IOCTL round trip to
/// the daemon each time, because the kernel's FUSE module turns the daemon's ENOSYS into ENOTTY
/// per call and remembers nothing (fs/fuse/ioctl.c). overlayfs answers that ioctl itself, so a
/// plain mount (no writable layer, no materialized tree) is mounted like those: the FUSE
/// filesystem at the hidden lower (`EnvOverlay.hiddenLower`) and an overlay at the mount point.
/// overlayfs without an upper directory needs two lowers, so the top one is an empty directory,
/// `<control dir>/<hash of the mount point>.front`, given the published root's owner, mode and
/// mtime (the overlay's root takes them from its top layer). Root only (overlayfs is root's); a
/// user's mount stays plain FUSE. `--no-front-overlay` turns it off (for measurements).
enum FrontOverlay {
    /// Suffix of the empty top lower's name: how `EnvOverlay` tells this overlay from a native one.
    static let suffix = ".front"

    static func directory(for mountpoint: String) -> String {
        "\(ControlPaths.directory())/\(ChunkID.of(Array(mountpoint.utf8)).hex.prefix(16))\(suffix)"
    }

    /// Whether `lowers` (topmost first) are a front overlay's: an empty `.front` directory over FUSE.
    static func isFront(_ lowers: [String]) -> Bool {
        lowers.count == 2 && lowers[0].hasSuffix(suffix)
    }

    /// Why an overlay cannot be mounted here (no overlayfs in the kernel, a sandbox that refuses
    /// it), found by mounting and unmounting a throwaway one of two empty directories; nil when
    /// it can. A mount that cannot have the overlay is served by FUSE alone, as before.
    static func unavailable() -> String? {
        let base = "\(ControlPaths.directory())/probe.\(ProcessControl.pid)"
        defer { try? FS.removeTree(base) }
        do {
            for d in ["a", "b", "m"] { try FS.makeDirectories("\(base)/\(d)", mode: 0o700) }
            try FS.mount(source: "envmount-probe", target: "\(base)/m", type: "overlay", options: "lowerdir=\(base)/a:\(base)/b")
        } catch {
            return "\(error)"
        }
        do { try FS.unmount("\(base)/m") } catch { try? FS.lazyUnmount("\(base)/m") }
        return nil
    }

    /// Creates the empty directory (emptied if a killed daemon left anything in it) with the
    /// attributes of the manifest's root entry.
    static func prepare(_ dir: String, root: Manifest.Entry) throws {
        if FS.exists(dir) { try FS.removeTree(dir) }
        try FS.makeDirectories(dir, mode: 0o700)
        try FS.lchown(dir.pathBytes, uid: root.uid, gid: root.gid)
        try FS.chmod(dir.pathBytes, root.mode)
        try FS.setMtime(dir.pathBytes, ns: root.mtimeNs)
    }
}
