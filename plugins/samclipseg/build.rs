fn main() {
    // Sets COMMIT_ID and BUILD_REL_DATE for gst::plugin_define!.
    gst_plugin_version_helper::info()
}
