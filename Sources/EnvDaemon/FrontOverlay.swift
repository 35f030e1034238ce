import EnvFetch
import EnvFormat
import Glibc
import Synchronization
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

    /// Watches that the overlay stays on the mount point (a front or native overlay; a writable
    /// one is taken down and put back by `envmount reset`). `umount MOUNTPOINT` or `fusermount3
    /// -u MOUNTPOINT` (what a plain FUSE mount was taken down with) removes only the overlay;
    /// the FUSE mount under it would keep this daemon alive for nothing. Once the overlay is
    /// gone, the watcher detaches the FUSE mount (lazily: files still open through a detached
    /// overlay keep reading), and the session ends when the kernel lets go of it.
    final class Watcher: Sendable {
        let mountpoint: String
        let lower: String
        private let stopped = Atomic<Bool>(false)
        static let pollMicroseconds: UInt32 = 500_000

        init(mountpoint: String, lower: String) {
            self.mountpoint = mountpoint
            self.lower = lower
        }

        func start() {
            DetachedThread.start(name: "em-front-watch") { [self] in run() }
        }

        func stop() { stopped.store(true, ordering: .relaxed) }

        private func overlayPresent() -> Bool {
            guard let e = Mountpoints.find(mountpoint), let o = EnvOverlay.of(e) else { return false }
            return o.fuseLower == lower
        }

        private func run() {
            while !stopped.load(ordering: .relaxed) {
                usleep(Self.pollMicroseconds)
                if stopped.load(ordering: .relaxed) || overlayPresent() { continue }
                guard Mountpoints.find(lower) != nil else { return }
                Log.info("the overlay at \(mountpoint) was unmounted without `envmount unmount`; detaching the FUSE mount under it at \(lower)")
                do { try FS.lazyUnmount(lower) } catch { Log.error("cannot detach \(lower): \(error)") }
                return
            }
        }
    }
}

extension EnvOverlay {
    /// Detaches whatever is still mounted at a hidden lower path before a new FUSE mount goes
    /// there. Once `prepareMountpoint` has found no live mount on the mount point, nothing there
    /// uses it: it is a killed daemon's dead FUSE mount (its overlay taken down by hand), or one
    /// whose overlay was unmounted without `envmount unmount`. Without this the new mount would
    /// stack on it, and the dead one would stay for good. Lazily: open files keep reading.
    static func detachOrphans(at lower: String) {
        if FS.surelyNotMountRoot(lower) { return }
        for _ in 0..<16 where Mountpoints.find(lower) != nil {
            do { try FS.lazyUnmount(lower) } catch { return }
        }
    }
}
