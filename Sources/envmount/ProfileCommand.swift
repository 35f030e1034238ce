import ArgumentParser
import EnvDaemon
import SysKit

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Record what a workload reads, so other machines can prefetch exactly that.",
        subcommands: [Save.self])

    struct Save: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "save",
            abstract: "Upload the chunks this mount has read so far, in order, as a named profile.",
            discussion: """
                Run the workload on a fresh mount (e.g. `python -c 'import torch'`), then save. Later \
                mounts use it with `envmount mount … --prefetch NAME` or `envmount warm MOUNTPOINT --profile NAME`. \
                The profile is stored next to the manifest it belongs to: profiles/ENV/MANIFEST/NAME.
                """)

        @Argument(help: "The mount point.")
        var mountpoint: String

        @Argument(help: "Profile name (letters, digits, '-', '_', '.').")
        var name: String

        func run() throws {
            let mp = Mountpoints.absolute(mountpoint)
            do {
                let r = try ControlClient.saveProfile(mp, name: name)
                Console.out("saved profile \(name): \(r.chunks) chunks at \(r.key)")
            } catch {
                Console.error("envmount: \(error)")
                throw ExitCode.failure
            }
        }
    }
}
