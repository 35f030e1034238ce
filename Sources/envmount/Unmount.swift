import ArgumentParser
import EnvDaemon
import Glibc
import SysKit

struct Unmount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount",
        abstract: "Unmount an envmount mount point; its daemon then exits.")

    /// Seconds `unmount` waits for the daemon to finish exiting once its mounts are gone.
    static let daemonExitWait: Double = 10

    @Argument(help: "The mount point.")
    var mountpoint: String

    @Flag(help: "Detach now even if files are open (they stay readable until closed).")
    var lazy = false

    /// Unmounts, then waits for the daemon to exit: it tears down what it mounted on its way out,
    /// so a mount made at the same path right after must not meet it still at work.
    func run() throws {
        let mp = Mountpoints.absolute(mountpoint)
        guard let entry = Mountpoints.find(mp) else {
            Console.error("envmount: \(mp) is not mounted")
            throw ExitCode.failure
        }
        let daemon = ControlClient.daemonPid(mp)
        try unmount(mp, entry)
        if let pid = daemon, !ProcessControl.waitForExit(pid, seconds: Self.daemonExitWait) {
            Console.error("envmount: unmounted \(mp), but its daemon (pid \(pid)) is still running after \(Int(Self.daemonExitWait)) s")
        }
    }

    func unmount(_ mp: String, _ entry: MountTable.Entry) throws {
        if let overlay = EnvOverlay.of(entry) {
            // A writable or native mount: the overlay first, then the FUSE mount under it (its daemon exits).
            do { try lazy ? FS.lazyUnmount(mp) : FS.unmount(mp) } catch let e as SystemError where e.errno == EBUSY {
                Console.error("envmount: cannot unmount \(mp): files are open there; close them or use --lazy")
                throw ExitCode.failure
            }
            let lower = overlay.fuseLower
            // The daemon of a plain mount detaches its FUSE mount itself once the overlay is gone
            // (FrontOverlay.Watcher): an error for a mount that is no longer there is no error.
            if Mountpoints.find(lower) != nil, let err = Mountpoints.fusermountUnmount(lower, lazy: lazy), Mountpoints.find(lower) != nil {
                Console.error("envmount: unmounted the overlay at \(mp), but not the environment under it at \(lower): \(err)")
                throw ExitCode.failure
            }
            return
        }
        guard entry.fsType.hasPrefix("fuse") else {
            Console.error("envmount: \(mp) is a \(entry.fsType) mount, not an envmount one")
            throw ExitCode.failure
        }
        if let err = Mountpoints.fusermountUnmount(mp, lazy: lazy) {
            Console.error("envmount: cannot unmount \(mp): \(err)\(err.contains("busy") ? " (files are open there; close them or use --lazy)" : "")")
            throw ExitCode.failure
        }
    }
}
