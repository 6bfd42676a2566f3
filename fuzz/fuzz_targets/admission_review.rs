//! The webhook's AdmissionReview handler: any body gives a response or a typed error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vaultlet_injector::review::review;
use vaultlet_injector::settings::Settings;

fuzz_target!(|data: &[u8]| {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    let settings = SETTINGS.get_or_init(Settings::defaults);
    let _ = review(data, settings);
});
