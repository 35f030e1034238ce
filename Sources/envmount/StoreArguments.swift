import ArgumentParser
import EnvStore

/// Options shared by the subcommands that open a store.
struct StoreArguments: ParsableArguments {
    @Option(help: "S3 endpoint URL (R2, MinIO); default AWS_ENDPOINT_URL or AWS.")
    var endpoint: String?

    @Option(help: "S3 region (R2: auto); default AWS_REGION or the profile's.")
    var region: String?

    @Option(name: .customLong("mirror"), help: "Another base URL with the same store (http stores; repeatable).")
    var mirrors: [String] = []

    @Option(help: "Seconds after which a chunk that cannot be fetched fails the read with EIO.")
    var timeout: Double = 60

    var options: StoreOptions {
        var o = StoreOptions()
        o.endpoint = endpoint
        o.region = region
        o.mirrors = mirrors
        o.requestDeadline = timeout
        return o
    }
}
