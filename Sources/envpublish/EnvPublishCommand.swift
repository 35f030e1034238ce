import ArgumentParser
import EnvFormat

/// `envpublish SOURCE STORE` publishes (the default subcommand); the other subcommands manage
/// what a store holds.
@main
struct EnvPublishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "envpublish",
        abstract: "Publish a prepared Python venv (or any directory tree) to an envmount store.",
        discussion: """
            `envpublish SOURCE STORE [options]` publishes SOURCE as the next revision of an \
            environment (the `publish` subcommand; see `envpublish publish --help`).
            """,
        version: "envpublish " + ProductVersion.line,
        subcommands: [PublishCommand.self, KeygenCommand.self, RollbackCommand.self, GCCommand.self],
        defaultSubcommand: PublishCommand.self)
}
