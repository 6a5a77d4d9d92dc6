import AWSClient
import AWSSigning
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// `carbonstore aws setup` and `carbonstore aws policy` hold every value to the storage URI's rules,
/// and say which option is wrong; no AWS is needed for what they refuse before any request.
@Suite struct AWSCommandTests {
    /// An environment with dummy credentials, no instance metadata and no shared files.
    static let offline: [String: String] = [
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
    ]

    /// Runs `carbonstore aws ARGUMENTS` without holding a thread of the concurrency pool while it
    /// runs (the fake servers of this process, and of tests beside it, answer on that pool).
    static func run(_ arguments: [String], environment: [String: String] = offline) async throws
        -> CommandRunner.Output
    {
        try await runTool(["aws"] + arguments, environment: environment)
    }

    /// Runs `carbonstore ARGUMENTS` so, without holding a thread of the pool.
    static func runTool(_ arguments: [String], environment: [String: String]) async throws
        -> CommandRunner.Output
    {
        let running = try CommandRunner(environment: environment).start(arguments)
        while running.termination == nil { try await Task.sleep(for: .milliseconds(20)) }
        return running.finish()
    }

    /// Exit code 64 and one line that names the option, says what is wrong and shows a valid value.
    static func expectRefused(
        _ out: CommandRunner.Output, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(out.status == 64, "\(out.stderr)", sourceLocation: sourceLocation)
        #expect(out.stdout.isEmpty, "\(out.stdout)", sourceLocation: sourceLocation)
        #expect(out.stderr.hasPrefix("carbonstore: "), "\(out.stderr)", sourceLocation: sourceLocation)
        #expect(out.stderr.split(separator: "\n").count == 1, "\(out.stderr)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(out.stderr.contains(f), "'\(f)' not in: \(out.stderr)", sourceLocation: sourceLocation)
        }
    }

    @Test func setupNamesItsOwnOptionsInConfigurationErrors() async throws {
        let noRegion = try await Self.run(["setup", "--bucket", "my-bucket"])
        Self.expectRefused(noRegion, ["no AWS region", "--region", "AWS_REGION"])
        #expect(!noRegion.stderr.contains("storage URI"), "\(noRegion.stderr)")
        let ftp = try await Self.run([
            "setup", "--bucket", "my-bucket", "--region", "eu-west-1", "--endpoint", "ftp://x",
        ])
        Self.expectRefused(ftp, ["ftp://x", "(from --endpoint)", "http or https"])
        #expect(!ftp.stderr.contains("storage URI"), "\(ftp.stderr)")
    }

}
