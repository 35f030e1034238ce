import ArgumentParser
import Glibc
import EnvDaemon
import SysKit

struct Reset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Discard a writable layer: everything installed, removed or written over the environment.",
        discussion: """
            envmount reset MOUNTPOINT discards the layer of a writable mount: the overlay is \
            unmounted (no file may be open there), its upper and work directories emptied, and it is \
            mounted again over the same revision.

            envmount reset --writable DIR discards the layer in DIR while it is not mounted, its \
            record included: the next `envmount mount … --writable DIR` mounts the store's current \
            revision.
            """)

    @Argument(help: "A writable envmount mount point.")
    var mountpoint: String?

    @Option(help: ArgumentHelp("An unmounted writable layer directory to discard.", valueName: "DIR"))
    var writable: String?

    func validate() throws {
        if (mountpoint == nil) == (writable == nil) {
            throw ValidationError("give either a mount point or --writable DIR")
        }
    }

    func run() throws {
        do {
            if let w = writable {
                let layer = try WritableLayer(dir: w)
                try layer.discard()
                Console.out("discarded the writable layer in \(layer.dir)")
                return
            }
            let mp = (try? FS.realpath(Mountpoints.absolute(mountpoint!))) ?? Mountpoints.absolute(mountpoint!)
            guard let entry = Mountpoints.find(mp) else { throw MountError("\(mp) is not mounted") }
            guard let overlay = EnvOverlay.of(entry), let layer = overlay.layer else {
                throw MountError("\(mp) is not a writable envmount mount (mount it with --writable DIR)")
            }
            do { try FS.unmount(mp) } catch let e as SystemError where e.errno == EBUSY {
                throw MountError("cannot reset \(mp): files are open there (close them, or unmount and use `envmount reset --writable \(layer.dir)`)")
            }
            try layer.clear()
            do { try EnvOverlay.mount(env: overlay.env, at: mp, lowers: overlay.lowers, layer: layer) } catch {
                throw MountError("discarded the layer in \(layer.dir), but \(error); unmount the environment under it with `fusermount3 -u \(overlay.fuseLower)`")
            }
            Console.out("discarded the writable layer of \(mp) (\(layer.dir))")
        } catch let e as ExitCode {
            throw e
        } catch {
            Console.error("envmount: \(error)")
            throw ExitCode.failure
        }
    }
}
