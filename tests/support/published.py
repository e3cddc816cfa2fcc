"""Parameter counts of the published checkpoints (their model cards / safetensors headers),
which the shipped family configs must rebuild exactly."""

PUBLISHED = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd21-v": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd21": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    },
}
