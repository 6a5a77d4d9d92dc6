import Foundation

/// A configuration problem, in one line with a fix.
public struct AWSConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// The region and service endpoints the AWS client talks to.
///
/// Region: the storage URI's `region` (or a command's `--region`), else AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`
/// in the shared config file, and on EC2 the instance's region from instance metadata.
///
/// Endpoints: the storage URI's `endpoint` (or a command's `--endpoint`; for S3 and DynamoDB alike), else AWS_ENDPOINT_URL_<SERVICE>
/// (S3, DYNAMODB, STS), else AWS_ENDPOINT_URL, else the regional AWS endpoint
/// (`https://s3.{region}.amazonaws.com`; `amazonaws.com.cn` in China). AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true
/// ignores the variables (not the URI).
public struct AWSConfiguration: Sendable, Hashable {
    public var region: String
    /// Explicit endpoints by lower-cased service name ("s3", "dynamodb", "sts").
    public var endpoints: [String: URL]
    /// S3 path-style addressing (`https://host/bucket/key`): true when S3's endpoint was given
    /// explicitly (S3-compatible stores, moto, MinIO), false for AWS's virtual-hosted style.
    public var usesPathStyle: Bool

    public init(region: String, endpoints: [String: URL] = [:], usesPathStyle: Bool? = nil) {
        self.region = region
        self.endpoints = Dictionary(endpoints.map { ($0.key.lowercased(), $0.value) }) { $1 }
        self.usesPathStyle = usesPathStyle ?? (self.endpoints["s3"] != nil)
    }

    /// The endpoint for a service: the explicit one, else AWS's regional one.
    public func endpoint(for service: String) -> URL {
        endpoints[service.lowercased()] ?? Self.defaultEndpoint(service: service, region: region)
    }

    /// Services whose endpoints `resolve` fills in.
    public static let services = ["s3", "dynamodb", "sts"]

    /// Where the region and endpoint overrides of `resolve` come from, which its messages name: the
    /// storage URI's `region=` and `endpoint=` (the engine), or the `--region` and `--endpoint`
    /// options of a command (`carbonstore aws setup`).
    public enum OverrideSource: Sendable, Hashable {
        case storageURI
        case commandLine

        /// The origin of a region override, as an invalid region's message names it.
        public var regionOrigin: String {
            switch self {
            case .storageURI: "the storage URI's region"
            case .commandLine: "--region"
            }
        }

        /// The origin of an endpoint override, as an invalid endpoint's message names it.
        public var endpointOrigin: String {
            switch self {
            case .storageURI: "the storage URI's endpoint"
            case .commandLine: "--endpoint"
            }
        }

        /// What to do when nothing names a region.
        public var noRegionMessage: String {
            switch self {
            case .storageURI: "no AWS region: set AWS_REGION or add region= to the storage URI"
            case .commandLine: "no AWS region: give --region (such as --region eu-west-1) or set AWS_REGION"
            }
        }
    }

    /// Resolves the region and endpoints from the overrides (of the storage URI, or of a command's
    /// options: `overrides` says which, for messages) and the environment. `transport` is used only
    /// to ask EC2 instance metadata for the region when nothing else names one.
    ///
    /// `uses` names the services the caller will call (of `services`): settings that would choose
    /// other endpoints than those resolved here are refused only where they concern one of them, and
    /// the region is held to AWS's shape of names only when one of them goes to AWS itself.
    public static func resolve(
        environment: [String: String], regionOverride: String?, endpointOverride: String?,
        overrides: OverrideSource = .storageURI, transport: any HTTPTransport,
        metadataTimeout: Duration = .seconds(1), uses: Set<String> = ["s3", "dynamodb"]
    ) async throws -> AWSConfiguration {
        var endpoints: [String: URL] = [:]
        let uriEndpoint = try endpointOverride.map {
            try validatedEndpoint($0, origin: overrides.endpointOrigin)
        }
        for service in services {
            if let uriEndpoint, service != "sts" {
                endpoints[service] = uriEndpoint
            } else if let configured = try configuredEndpoint(service: service, environment: environment) {
                endpoints[service] = configured
            }
        }
        try refuseUnsupportedEndpointSettings(environment: environment, named: endpoints, uses: uses)
        let region = try await resolveRegion(
            environment: environment, regionOverride: regionOverride, overrides: overrides,
            transport: transport, metadataTimeout: metadataTimeout,
            awsNamesOnly: uses.contains { endpoints[$0] == nil })
        return AWSConfiguration(region: region, endpoints: endpoints)
    }

    /// The SDKs' settings that choose other endpoints of AWS's than the regional ones (FIPS,
    /// dual-stack) or endpoints per service in a profile's `services` section: CarbonStore does not
    /// build those endpoints, so where one would apply (a service of the engine's, S3 or DynamoDB,
    /// whose endpoint is not named), it is refused by name, never ignored: a FIPS deployment must
    /// not talk to a non-FIPS endpoint unawares. An endpoint named explicitly wins over them, as in
    /// the SDKs.
    static func refuseUnsupportedEndpointSettings(
        environment: [String: String], named: [String: URL], uses: Set<String>
    ) throws {
        let unnamed = uses.filter { named[$0] == nil }
        guard !unnamed.isEmpty else { return }
        let profile = ProfileCredentialProvider(environment: environment)
        let profileOrigin = "profile '\(profile.profileName)' of \(profile.configFilePath ?? "~/.aws/config")"
        // A services section matters only where it gives an endpoint to a service used, unnamed here.
        let sectionServices = profile.servicesWithEndpoints().map { $0.intersection(unnamed) } ?? []
        let settings: [(origin: String, isSet: Bool, what: String)] = [
            (
                "AWS_USE_FIPS_ENDPOINT=true", environmentFlag(environment, "AWS_USE_FIPS_ENDPOINT"),
                "FIPS endpoints"
            ),
            (
                "AWS_USE_DUALSTACK_ENDPOINT=true", environmentFlag(environment, "AWS_USE_DUALSTACK_ENDPOINT"),
                "dual-stack endpoints"
            ),
            (
                "use_fips_endpoint in \(profileOrigin)",
                profile.configValue("use_fips_endpoint")?.lowercased() == "true", "FIPS endpoints"
            ),
            (
                "use_dualstack_endpoint in \(profileOrigin)",
                profile.configValue("use_dualstack_endpoint")?.lowercased() == "true", "dual-stack endpoints"
            ),
            (
                "services in \(profileOrigin)",
                !environmentFlag(environment, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
                    && !sectionServices.isEmpty,
                "endpoints for \(sectionServices.sorted().joined(separator: " and ")) from its services section"
            ),
        ]
        guard let set = settings.first(where: \.isSet) else { return }
        let variables = unnamed.sorted().map { "AWS_ENDPOINT_URL_" + $0.uppercased() }.joined(
            separator: " and ")
        let fipsExample =
            set.what == "FIPS endpoints"
            ? " (such as "
                + unnamed.sorted().map { "https://\($0)-fips.us-east-1.amazonaws.com" }.joined(
                    separator: " and ") + ")"
            : ""
        throw AWSConfigurationError(
            "\(set.origin) asks for \(set.what), which CarbonStore does not read or build: name the endpoints instead, with endpoint= in the storage URI or \(variables)\(fipsExample), or remove the setting"
        )
    }

    /// The region, by the documented precedence; throws when none is found.
    ///
    /// With `awsNamesOnly` (a request goes to AWS itself), a region must have the shape of AWS's
    /// names (`isValidRegion`); without it (every service is named by an endpoint: an S3- or
    /// DynamoDB-compatible store, which may name its regions otherwise, such as MinIO's `eu_central`),
    /// upper-case letters and `_` are allowed too (`isValidCompatibleRegion`).
    public static func resolveRegion(
        environment: [String: String], regionOverride: String?, overrides: OverrideSource = .storageURI,
        transport: any HTTPTransport, metadataTimeout: Duration = .seconds(1), awsNamesOnly: Bool = true
    ) async throws -> String {
        var candidates: [(String?, String)] = [
            (regionOverride.flatMap { $0.isEmpty ? nil : $0 }, overrides.regionOrigin),
            (environmentValue(environment, "AWS_REGION"), "AWS_REGION"),
            (environmentValue(environment, "AWS_DEFAULT_REGION"), "AWS_DEFAULT_REGION"),
        ]
        let profile = ProfileCredentialProvider(environment: environment)
        candidates.append(
            (
                profile.region(),
                "region in profile '\(profile.profileName)' of \(profile.configFilePath ?? "~/.aws/config")"
            ))
        for case (let value?, let origin) in candidates {
            guard awsNamesOnly ? isValidRegion(value) : isValidCompatibleRegion(value) else {
                throw AWSConfigurationError(
                    awsNamesOnly
                        ? "invalid AWS region '\(oneLine(value, limit: 60))' (from \(origin)): expected lower-case letters, digits and '-', such as eu-west-1 (a compatible store named by an endpoint may use other names)"
                        : "invalid region '\(oneLine(value, limit: 60))' (from \(origin)): expected letters, digits, '-' and '_', such as eu-west-1"
                )
            }
            return value
        }
        let imds = InstanceMetadataCredentialProvider(
            environment: environment, transport: transport, timeout: metadataTimeout, maxAttempts: 1)
        if !imds.isDisabled, let region = try? await imds.region(), isValidRegion(region) {
            return region
        }
        throw AWSConfigurationError(overrides.noRegionMessage)
    }

    /// An endpoint set by AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL or the profile's
    /// `endpoint_url`, in that order (the SDKs' order), validated; nil when none is set or
    /// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true.
    public static func configuredEndpoint(service: String, environment: [String: String]) throws -> URL? {
        if environmentFlag(environment, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") { return nil }
        let specific = "AWS_ENDPOINT_URL_" + service.uppercased().replacingOccurrences(of: " ", with: "_")
        for name in [specific, "AWS_ENDPOINT_URL"] {
            if let value = environmentValue(environment, name) {
                return try validatedEndpoint(value, origin: name)
            }
        }
        let profile = ProfileCredentialProvider(environment: environment)
        if let value = profile.configValue("endpoint_url") {
            return try validatedEndpoint(
                value,
                origin:
                    "endpoint_url in profile '\(profile.profileName)' of \(profile.configFilePath ?? "~/.aws/config")"
            )
        }
        return nil
    }

    /// AWS's endpoint for a service in a region: `https://{service}.{region}.amazonaws.com`, with
    /// `amazonaws.com.cn` for the China regions (cn-*).
    public static func defaultEndpoint(service: String, region: String) -> URL {
        let suffix = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
        return URL(string: "https://\(service.lowercased()).\(region).\(suffix)")!
    }

    /// Lower-case letters, digits and '-', 1 to 63 characters, not beginning or ending with '-': the
    /// rule of the storage URI's `region=`, applied alike to a region from the environment, a
    /// profile or instance metadata (AWS names regions so; a region AWS would refuse in the
    /// signature is refused here, where its origin can be named).
    public static func isValidRegion(_ region: String) -> Bool {
        (1...63).contains(region.utf8.count)
            && region.utf8.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D
            }
            && !region.hasPrefix("-") && !region.hasSuffix("-")
    }

    /// Letters, digits, '-' and '_', 1 to 63 characters, not beginning or ending with '-': a region of
    /// an S3- or DynamoDB-compatible store, which names its regions more freely than AWS.
    public static func isValidCompatibleRegion(_ region: String) -> Bool {
        (1...63).contains(region.utf8.count)
            && region.utf8.allSatisfy {
                ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D
                    || $0 == 0x5F
            }
            && !region.hasPrefix("-") && !region.hasSuffix("-")
    }

    /// Checks an endpoint URL: http or https, a host, no credentials, query or fragment. A trailing
    /// slash is dropped.
    public static func validatedEndpoint(_ text: String, origin: String) throws -> URL {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let example = "expected a URL such as http://localhost:9000 or https://s3.eu-west-1.amazonaws.com"
        let shown = "'\(oneLine(SecretRedaction.redact(trimmed), limit: 120))' (from \(origin))"
        guard let components = URLComponents(string: trimmed), let scheme = components.scheme?.lowercased()
        else {
            throw AWSConfigurationError("invalid endpoint \(shown): \(example)")
        }
        guard scheme == "http" || scheme == "https" else {
            throw AWSConfigurationError(
                "invalid endpoint \(shown): the scheme must be http or https (\(example))")
        }
        guard let host = components.host, !host.isEmpty else {
            throw AWSConfigurationError("invalid endpoint \(shown): it has no host name (\(example))")
        }
        guard components.user == nil, components.password == nil else {
            throw AWSConfigurationError(
                "invalid endpoint \(shown): user names and passwords are not allowed in it")
        }
        guard components.query == nil, components.fragment == nil else {
            throw AWSConfigurationError("invalid endpoint \(shown): it must not have a query or a fragment")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw AWSConfigurationError("invalid endpoint \(shown): the port must be 1 to 65535")
        }
        var normalized = components
        normalized.scheme = scheme
        while normalized.path.hasSuffix("/") { normalized.path.removeLast() }
        guard let url = normalized.url else {
            throw AWSConfigurationError("invalid endpoint \(shown): \(example)")
        }
        return url
    }
}
