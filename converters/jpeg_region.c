/* The rows and columns of a JPEG that hold its faces, decoded grey at 1/denom through the system's libjpeg(-turbo),
   which can skip the rows above (no inverse DCT), crop each row (no inverse DCT outside), and stop after the last
   row wanted (nothing below is even entropy-decoded). Built by converters/jpeg_region.py on first use. */
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h>

struct error_jump { struct jpeg_error_mgr mgr; jmp_buf jump; };

static void on_error(j_common_ptr cinfo) { longjmp(((struct error_jump *)cinfo->err)->jump, 1); }
static void on_message(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }  /* warnings: as OpenCV */

/* 0: rows [top, bottom) and at least columns [left, right) of the grey image at 1/denom written into `out`
   (height x width bytes, row-major); 1: libjpeg gave up on the data; 2: its scaled size is not height x width. */
int emodet_region_grey(const unsigned char *data, unsigned long size, int denom, int top, int bottom, int left,
                       int right, unsigned char *out, int height, int width)
{
    struct jpeg_decompress_struct cinfo;
    struct error_jump err;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = on_error;
    err.mgr.emit_message = on_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.scale_num = 1;
    cinfo.scale_denom = denom;
    cinfo.out_color_space = JCS_GRAYSCALE;
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_width != width || (int)cinfo.output_height != height) {
        jpeg_destroy_decompress(&cinfo);
        return 2;
    }
    JDIMENSION x = left, w = right - left;
    if (left > 0 || right < width)
        jpeg_crop_scanline(&cinfo, &x, &w);  /* widens to whole iMCUs */
    if (top > 0)
        jpeg_skip_scanlines(&cinfo, top);
    while ((int)cinfo.output_scanline < bottom) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * width + x;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_abort_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
