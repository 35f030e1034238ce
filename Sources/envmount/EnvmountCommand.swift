import ArgumentParser
import EnvFormat

@main
struct EnvmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "envmount",
        abstract: "Mount a published Python environment lazily through FUSE.",
        discussion: """
            Files appear at once; their chunks are fetched from the store on first read, checked \
            against their SHA-256, and kept in a local cache shared by all mounts.

            Example:
              envmount mount /srv/envstore /opt/venv --env torch
              /opt/venv/bin/python -c 'import torch'
              envmount unmount /opt/venv
            """,
        version: "envmount " + ProductVersion.line,
        subcommands: [Mount.self, Unmount.self, Reset.self, CheckCommand.self, Warm.self, Status.self, ProfileCommand.self, CacheCommand.self, Daemon.self,
                      ListCommand.self, DiffCommand.self, FreezeCommand.self])
}
