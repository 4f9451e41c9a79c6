/// What this build is, for `--version` and the `*_build_info` metrics.
public enum Build {
    public static let version = "0.9.0"
}
