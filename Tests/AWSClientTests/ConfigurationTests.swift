import AWSClient
import CarbonStoreTestSupport
import Foundation
import Testing

@Suite("AWS configuration")
struct ConfigurationTests {
    func resolve(
        _ env: [String: String], region: String? = nil, endpoint: String? = nil,
        overrides: AWSConfiguration.OverrideSource = .storageURI
    ) async throws -> AWSConfiguration {
        var env = env
        if env["HOME"] == nil { env["HOME"] = "/nonexistent-home" }
        if env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == nil { env["AWS_EC2_METADATA_DISABLED"] = "true" }
        return try await AWSConfiguration.resolve(
            environment: env, regionOverride: region, endpointOverride: endpoint, overrides: overrides,
            transport: transport, metadataTimeout: .seconds(10))
    }

    @Test func regionPrecedence() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            "[default]\nregion = ap-southeast-2\n[profile dev]\nregion = ca-central-1\n",
            to: home.path + "/.aws/config")
        let all = ["HOME": home.path, "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"]
        #expect(try await resolve(all, region: "eu-central-1").region == "eu-central-1")
        #expect(try await resolve(all).region == "eu-west-1")
        #expect(try await resolve(all.filter { $0.key != "AWS_REGION" }).region == "us-west-2")
        #expect(try await resolve(["HOME": home.path]).region == "ap-southeast-2")
        #expect(try await resolve(["HOME": home.path, "AWS_PROFILE": "dev"]).region == "ca-central-1")
    }

    @Test func regionFromInstanceMetadataAsLastResort() async throws {
        try await withLoopbackServer(fakeIMDS()) { server in
            let c = try await resolve(["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString])
            #expect(c.region == "eu-north-1")
            #expect(
                server.requests.map(\.path) == ["/latest/api/token", "/latest/meta-data/placement/region"])
        }
    }

    @Test func noRegionIsAClearError() async {
        let error = await #expect(throws: AWSConfigurationError.self) { try await resolve([:]) }
        #expect(error?.description == "no AWS region: set AWS_REGION or add region= to the storage URI")
    }

    /// `carbonstore aws setup` takes the region and the endpoint as --region and --endpoint, and its
    /// messages say so (not "the storage URI", which setup does not read).
    @Test func commandLineOverridesAreNamedAsOptions() async {
        let noRegion = await #expect(throws: AWSConfigurationError.self) {
            try await resolve([:], overrides: .commandLine)
        }
        #expect(
            noRegion?.description
                == "no AWS region: give --region (such as --region eu-west-1) or set AWS_REGION")
        let region = await #expect(throws: AWSConfigurationError.self) {
            try await resolve([:], region: "eu west", overrides: .commandLine)
        }
        #expect(region?.description.contains("(from --region)") == true, "\(region?.description ?? "")")
        let endpoint = await #expect(throws: AWSConfigurationError.self) {
            try await resolve(["AWS_REGION": "us-east-1"], endpoint: "ftp://x", overrides: .commandLine)
        }
        #expect(
            endpoint?.description
                == "invalid endpoint 'ftp://x' (from --endpoint): the scheme must be http or https (expected a URL such as http://localhost:9000 or https://s3.eu-west-1.amazonaws.com)"
        )
        #expect(endpoint?.description.contains("storage URI") == false)
    }

    @Test func invalidRegionNamesItsOrigin() async {
        let error = await #expect(throws: AWSConfigurationError.self) {
            try await resolve(["AWS_REGION": "eu west/1"])
        }
        #expect(error?.description.contains("(from AWS_REGION)") == true)
    }

    /// A region from the environment or a profile obeys `region=`'s rule, and is refused by origin.
    @Test func aRegionAWSWouldRefuseIsRefusedWhereverItComesFrom() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try write("[default]\nregion = EU-West-1\n", to: home.path + "/.aws/config")
        for (env, origin) in [
            (["AWS_REGION": "EU-WEST-1"], "from AWS_REGION"),
            (["AWS_DEFAULT_REGION": "eu_west_1"], "from AWS_DEFAULT_REGION"),
            (["HOME": home.path], "from region in profile 'default'"),
        ] {
            let error = await #expect(throws: AWSConfigurationError.self) { try await resolve(env) }
            #expect(error?.description.contains(origin) == true, "\(String(describing: error))")
            #expect(error?.description.contains("lower-case letters, digits and '-'") == true)
        }
        #expect(try await resolve(["AWS_REGION": "eu-west-1"]).region == "eu-west-1")
        // A compatible store named by an endpoint may name its regions otherwise (MinIO: eu_central).
        let compatible = try await resolve(["AWS_REGION": "EU_central"], endpoint: "http://127.0.0.1:9000")
        #expect(compatible.region == "EU_central")
        let error = await #expect(throws: AWSConfigurationError.self) {
            try await resolve(["AWS_REGION": "eu central"], endpoint: "http://127.0.0.1:9000")
        }
        #expect(error?.description.contains("from AWS_REGION") == true)
    }

    /// FIPS, dual-stack and per-service profile endpoints are refused by name, never ignored, unless
    /// the endpoints are named; a profile's endpoint_url is used after the variables.
    @Test func endpointSettingsThatAreNotBuiltAreRefusedByName() async throws {
        let home = try makeHome()
        defer { home.remove() }
        let base = ["AWS_REGION": "us-east-1"]
        for (name, setting) in [
            ("AWS_USE_FIPS_ENDPOINT", "AWS_USE_FIPS_ENDPOINT=true"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT=true"),
        ] {
            let error = await #expect(throws: AWSConfigurationError.self) {
                try await resolve(base.merging([name: "true"]) { $1 })
            }
            #expect(error?.description.contains(setting) == true, "\(String(describing: error))")
            #expect(error?.description.contains("AWS_ENDPOINT_URL_S3") == true)
            // Named endpoints win, as in the SDKs.
            let named = try await resolve(
                base.merging([name: "true"]) { $1 }, endpoint: "https://s3-fips.example")
            #expect(named.endpoints["s3"]?.absoluteString == "https://s3-fips.example")
        }
        for line in [
            "use_fips_endpoint = true", "use_dualstack_endpoint = true",
            "services = local\n[services local]\ns3 =\n  endpoint_url = http://127.0.0.1:4566\n",
        ] {
            try write("[default]\n\(line)\n", to: home.path + "/.aws/config")
            let error = await #expect(throws: AWSConfigurationError.self) {
                try await resolve(base.merging(["HOME": home.path]) { $1 })
            }
            let key = String(line.prefix { $0 != " " })
            #expect(
                error?.description.contains("\(key) in profile 'default'") == true,
                "\(String(describing: error))")
        }
        // Only the services used count: FIPS with S3's endpoint named, for a store on S3 alone; a
        // services section for other services.
        let s3Only = try await AWSConfiguration.resolve(
            environment: base.merging([
                "HOME": "/nonexistent-home", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_USE_FIPS_ENDPOINT": "true",
                "AWS_ENDPOINT_URL_S3": "https://s3-fips.us-east-1.amazonaws.com",
            ]) { $1 }, regionOverride: nil, endpointOverride: nil, transport: transport, uses: ["s3"])
        #expect(s3Only.endpoints["s3"]?.absoluteString == "https://s3-fips.us-east-1.amazonaws.com")
        try write(
            "[default]\nservices = queues\n[services queues]\nsqs =\n  endpoint_url = http://127.0.0.1:4566\n",
            to: home.path + "/.aws/config")
        #expect(try await resolve(base.merging(["HOME": home.path]) { $1 }).endpoints["s3"] == nil)
        try write("[default]\nendpoint_url = http://127.0.0.1:4566\n", to: home.path + "/.aws/config")
        let fromProfile = try await resolve(base.merging(["HOME": home.path]) { $1 })
        #expect(fromProfile.endpoints["s3"]?.absoluteString == "http://127.0.0.1:4566")
        #expect(fromProfile.endpoints["dynamodb"]?.absoluteString == "http://127.0.0.1:4566")
        let variableWins = try await resolve(
            base.merging(["HOME": home.path, "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"]) { $1 })
        #expect(variableWins.endpoints["s3"]?.absoluteString == "http://127.0.0.1:9000")
        let ignored = try await resolve(
            base.merging(["HOME": home.path, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"]) { $1 })
        #expect(ignored.endpoints["s3"] == nil)
    }

    @Test func defaultEndpoints() async throws {
        let c = try await resolve(["AWS_REGION": "eu-west-1"])
        #expect(c.endpoint(for: "s3").absoluteString == "https://s3.eu-west-1.amazonaws.com")
        #expect(c.endpoint(for: "dynamodb").absoluteString == "https://dynamodb.eu-west-1.amazonaws.com")
        #expect(c.endpoint(for: "sts").absoluteString == "https://sts.eu-west-1.amazonaws.com")
        #expect(c.usesPathStyle == false)
        let cn = try await resolve(["AWS_REGION": "cn-northwest-1"])
        #expect(cn.endpoint(for: "s3").absoluteString == "https://s3.cn-northwest-1.amazonaws.com.cn")
    }

    @Test func uriEndpointAppliesToS3AndDynamoDB() async throws {
        let env = [
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": "http://ignored:1",
            "AWS_ENDPOINT_URL": "http://ignored:2",
        ]
        let c = try await resolve(env, endpoint: "http://127.0.0.1:5000/")
        #expect(c.endpoint(for: "s3").absoluteString == "http://127.0.0.1:5000")
        #expect(c.endpoint(for: "dynamodb").absoluteString == "http://127.0.0.1:5000")
        #expect(c.usesPathStyle)
    }

    @Test func serviceSpecificVariablesWinOverTheGlobalOne() async throws {
        let c = try await resolve([
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": "http://localhost:9000",
            "AWS_ENDPOINT_URL": "http://localhost:4566",
        ])
        #expect(c.endpoint(for: "s3").absoluteString == "http://localhost:9000")
        #expect(c.endpoint(for: "dynamodb").absoluteString == "http://localhost:4566")
        #expect(c.endpoint(for: "sts").absoluteString == "http://localhost:4566")
        #expect(c.usesPathStyle)
        let dynamoOnly = try await resolve([
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_DYNAMODB": "http://localhost:8000",
        ])
        #expect(dynamoOnly.endpoint(for: "dynamodb").absoluteString == "http://localhost:8000")
        #expect(dynamoOnly.endpoint(for: "s3").absoluteString == "https://s3.us-east-1.amazonaws.com")
        #expect(dynamoOnly.usesPathStyle == false)
        let ignored = try await resolve([
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://localhost:4566",
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
        ])
        #expect(ignored.endpoint(for: "s3").absoluteString == "https://s3.us-east-1.amazonaws.com")
    }

    @Test(arguments: [
        ("localhost:9000", "the scheme must be http or https"),
        ("ftp://host", "the scheme must be http or https"),
        ("http://", "no host name"),
        ("http://user:pw@host", "user names and passwords"),
        ("http://host/?a=b", "query or a fragment"),
        ("not a url at all", "invalid endpoint"),
    ])
    func invalidEndpoints(_ value: String, _ expected: String) async {
        let error = await #expect(throws: AWSConfigurationError.self) {
            try await resolve(["AWS_REGION": "us-east-1"], endpoint: value)
        }
        #expect(error?.description.contains(expected) == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("storage URI's endpoint") == true)
        let fromVariable = await #expect(throws: AWSConfigurationError.self) {
            try await resolve(["AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_DYNAMODB": value])
        }
        #expect(fromVariable?.description.contains("AWS_ENDPOINT_URL_DYNAMODB") == true)
    }

    @Test func explicitConfiguration() {
        let c = AWSConfiguration(region: "eu-west-3", endpoints: ["S3": URL(string: "http://minio:9000")!])
        #expect(c.endpoint(for: "s3").absoluteString == "http://minio:9000")
        #expect(c.usesPathStyle)
        #expect(c.endpoint(for: "dynamodb").absoluteString == "https://dynamodb.eu-west-3.amazonaws.com")
    }
}
