import ArgumentParser
import Foundation

/// The `carbonstore` command. The executable is a thin `main` that runs it; every command lives in
/// this library.
public struct CarbonStoreCommand: AsyncParsableCommand {
    public init() {}

    /// The subcommands, for a program that adds its own beside them (the package's test host).
    package static let commands: [any ParsableCommand.Type] = [
        TxnCommand.self, AnswerCommand.self, PrefCommand.self, FootprintCommand.self, SavingCommand.self,
        UserCommand.self, FileCommand.self, VerifyCommand.self, AWSCommand.self, DemoCommand.self,
        ServeCommand.self,
        KeysCommand.self,
    ]

    public static let configuration = CommandConfiguration(
        commandName: "carbonstore",
        abstract: "Per-user carbon-footprint records in one compact binary file per user.",
        discussion: """
            Storage is chosen by --storage or CARBONSTORE_STORAGE (default: path:carbonstore-data), e.g.
              path:///mnt/efs/users?locking=dynamo&table=locks
              s3:my-bucket?locking=dynamo&table=locks
              memory:
            The old variable COGO_STORAGE is still read when CARBONSTORE_STORAGE is not set, with a \
            deprecation warning.
            Exit codes: 0 success, 1 failure, 3 not found, 4 conflict, 5 damaged data, \
            6 try again (lock timeout, lease expired, unavailable), 64 invalid input, \
            77 permission denied (a file, directory, bucket or table this process may not use).
            Ids and keys in human-readable output show control characters escaped, as \\u{1B}.
            """,
        subcommands: commands
    )
}

/// Parses the command line for a root command and runs the chosen command, asynchronously, as
/// ArgumentParser's own `main` does for a root marked `@main`; exits with the command's status.
package func runCommandLine(_ root: any ParsableCommand.Type) async -> Never {
    do {
        var command = try root.parseAsRoot()
        if var asyncCommand = command as? any AsyncParsableCommand {
            try await asyncCommand.run()
        } else {
            try command.run()
        }
        root.exit()
    } catch {
        // Help, a command's own exit code and errors already printed are ArgumentParser's to end;
        // a usage error (an option missing, unknown or malformed) is one line, like every other
        // failure, with the exit code ArgumentParser gives it (64).
        let code = root.exitCode(for: error)
        if code == .success || error is ExitCode || error is CleanExit { root.exit(withError: error) }
        let message =
            root.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid usage"
        printError(message + " (--help shows the usage)")
        exit(code.rawValue)
    }
}
