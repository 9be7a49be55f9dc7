"""Run by :mod:`converters.onnx_tflite` in onnx2tf's own environment (it never imports edgeseg):

    python -c "$(cat onnx2tf_worker.py)" MODEL.onnx OUT_FOLDER NAME:1,3,H,W [NHWC]

writes OUT_FOLDER/saved_model.pb and OUT_FOLDER/MODEL_float32.tflite, the input fixed at the
shape given (batch 1). onnx2tf reads its sample images from the working folder when present
(the caller writes them: nothing is downloaded). On failure onnx2tf prints the node it stopped at.
"""

import sys


def main() -> None:
    import onnx2tf

    source, out, shape = sys.argv[1:4]
    nhwc = sys.argv[4:5] == ["NHWC"]
    name = shape.split(":")[0]
    onnx2tf.convert(input_onnx_file_path=source, output_folder_path=out,
                    output_signaturedefs=True, overwrite_input_shape=[shape], batch_size=1,
                    copy_onnx_input_output_names_to_tflite=True, non_verbose=True,
                    keep_nwc_or_nhwc_or_ndhwc_input_names=[name] if nhwc else None)


if __name__ == "__main__":
    main()
